CREATE TABLE `reconciliation_discrepancies` (
	`run_id` text NOT NULL,
	`key` text NOT NULL,
	`kind` text NOT NULL,
	`user_id` text,
	`transfer_id` text,
	`detail` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`run_id`, `key`)
);
--> statement-breakpoint
CREATE TABLE `reconciliation_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`status` text NOT NULL,
	`trigger` text NOT NULL,
	`started_by` text,
	`started_at` integer NOT NULL,
	`cutoff_at` integer NOT NULL,
	`finished_at` integer,
	`wallets_checked` integer DEFAULT 0 NOT NULL,
	`pages_done` integer DEFAULT 0 NOT NULL,
	`total_balance` integer,
	`total_granted` integer,
	`pending_transfers` integer,
	`in_flight_amount` integer,
	`stuck_transfers` integer,
	`discrepancy_count` integer DEFAULT 0 NOT NULL,
	`error` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `reconciliation_runs_one_running` ON `reconciliation_runs` (`status`) WHERE status = 'running';--> statement-breakpoint
CREATE INDEX `reconciliation_runs_status_started_idx` ON `reconciliation_runs` (`status`,`started_at`);--> statement-breakpoint
CREATE INDEX `messages_transfer_sender_idx` ON `messages` (`sender_id`,`transfer_id`) WHERE transfer_id IS NOT NULL;--> statement-breakpoint
CREATE INDEX `messages_transfer_recipient_idx` ON `messages` (`transfer_recipient_id`,`transfer_id`) WHERE transfer_id IS NOT NULL;--> statement-breakpoint
CREATE INDEX `refresh_tokens_expires_idx` ON `refresh_tokens` (`expires_at`);--> statement-breakpoint
CREATE INDEX `refresh_tokens_revoked_idx` ON `refresh_tokens` (`revoked_at`) WHERE revoked_at IS NOT NULL;