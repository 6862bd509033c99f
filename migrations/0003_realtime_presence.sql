CREATE TABLE `realtime_presence` (
	`user_id` text PRIMARY KEY NOT NULL,
	`connected` integer NOT NULL,
	`changed_at` integer NOT NULL
);
