-- The chat of every message id written before chat objects (such ids carry no route tag), filled by the
-- chat migration (services/chat-migration/) page by page and kept for good: PATCH/DELETE /messages/{id}
-- of an old message finds its chat here once D1's messages is dropped (migrations-after-chat-move/).
CREATE TABLE `message_routes` (
	`message_id` text PRIMARY KEY NOT NULL,
	`chat_id` text NOT NULL
);
