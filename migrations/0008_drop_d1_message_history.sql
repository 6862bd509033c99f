DROP TABLE `message_routes`;--> statement-breakpoint
DROP TABLE `messages`;