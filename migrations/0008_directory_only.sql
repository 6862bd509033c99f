DROP TABLE `message_routes`;--> statement-breakpoint
DROP TABLE `messages`;--> statement-breakpoint
DROP TABLE `refresh_tokens`;