DROP TABLE `message_routes`;--> statement-breakpoint
DROP TABLE `messages`;--> statement-breakpoint
DROP TABLE `refresh_tokens`;--> statement-breakpoint
DROP INDEX `chats_direct_key_unique`;--> statement-breakpoint
DROP INDEX `chats_route_tag_unique`;--> statement-breakpoint
ALTER TABLE `chats` ADD `index_version` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `chats` ADD `member_count` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX `chats_direct_key_idx` ON `chats` (`direct_key`);--> statement-breakpoint
CREATE INDEX `chats_route_tag_idx` ON `chats` (`route_tag`);--> statement-breakpoint
ALTER TABLE `users` ADD `facts_version` integer DEFAULT 0 NOT NULL;