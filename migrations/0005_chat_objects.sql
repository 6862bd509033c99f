-- Chats move into Durable Objects (issue 21; docs/chats.md). The directory keeps one summary row
-- per chat: its last message (JSON of the API's Message) joins last_seq and last_activity_at, and
-- every chat gets the route tag its message ids carry. Existing chats get a random tag and their
-- current last message; their D1 messages are moved into their objects by the migration Workflow.
ALTER TABLE `chats` ADD `last_message` text;--> statement-breakpoint
ALTER TABLE `chats` ADD `route_tag` text NOT NULL DEFAULT '';--> statement-breakpoint
UPDATE `chats` SET `route_tag` = lower(hex(randomblob(6)));--> statement-breakpoint
UPDATE `chats` SET `last_message` = (
  SELECT json_object(
    'id', m.id, 'chatId', m.chat_id, 'seq', m.seq, 'senderId', m.sender_id, 'type', m.type,
    'content', CASE WHEN m.deleted_at IS NULL THEN m.content END,
    'replyToMessageId', m.reply_to_message_id, 'clientMessageId', m.client_message_id,
    'creditTransfer', CASE WHEN m.type = 'credit_transfer' AND m.transfer_id IS NOT NULL THEN json_object(
      'transferId', m.transfer_id, 'recipientId', coalesce(m.transfer_recipient_id, ''),
      'amount', coalesce(m.transfer_amount, 0), 'note', m.transfer_note) END,
    'createdAt', strftime('%Y-%m-%dT%H:%M:%fZ', m.created_at / 1000.0, 'unixepoch'),
    'editedAt', CASE WHEN m.edited_at IS NOT NULL THEN strftime('%Y-%m-%dT%H:%M:%fZ', m.edited_at / 1000.0, 'unixepoch') END,
    'deletedAt', CASE WHEN m.deleted_at IS NOT NULL THEN strftime('%Y-%m-%dT%H:%M:%fZ', m.deleted_at / 1000.0, 'unixepoch') END
  )
  FROM `messages` m WHERE m.chat_id = `chats`.`id` AND m.seq = `chats`.`last_seq`
);--> statement-breakpoint
CREATE UNIQUE INDEX `chats_route_tag_unique` ON `chats` (`route_tag`);--> statement-breakpoint
CREATE INDEX `chats_activity_idx` ON `chats` (`last_activity_at`,`id`);
