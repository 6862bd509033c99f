-- Reconciliation reads transfer messages from the chat objects (docs/wallets.md, "Reconciliation"):
-- chats that may hold a credit transfer's message are marked, so a run walks only those, and a run
-- adds up its message counts per user in D1, page by page, each page once.
CREATE TABLE `reconciliation_chat_pages` (
	`run_id` text NOT NULL,
	`page` integer NOT NULL,
	`next_after` text,
	`chats` integer NOT NULL,
	PRIMARY KEY(`run_id`, `page`)
);
--> statement-breakpoint
CREATE TABLE `reconciliation_message_totals` (
	`run_id` text NOT NULL,
	`user_id` text NOT NULL,
	`sent_count` integer NOT NULL,
	`sent_amount` integer NOT NULL,
	`received_count` integer NOT NULL,
	`received_amount` integer NOT NULL,
	PRIMARY KEY(`run_id`, `user_id`)
);
--> statement-breakpoint
ALTER TABLE `chats` ADD `carries_transfers` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX `chats_transfers_idx` ON `chats` (`id`) WHERE carries_transfers = 1;--> statement-breakpoint
-- The chats whose transfer messages an existing deployment wrote to D1 (moved into their objects
-- by the chat migration); every later transfer marks its chat itself. Reads D1's `messages`, so it
-- runs before the migration that drops that table (numbered after this one).
UPDATE `chats` SET `carries_transfers` = 1 WHERE `id` IN (SELECT DISTINCT `chat_id` FROM `messages` WHERE `transfer_id` IS NOT NULL);
