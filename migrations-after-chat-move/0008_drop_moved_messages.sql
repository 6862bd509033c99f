-- Drops the D1 history the chat migration moved into the chat objects (README, "Upgrading an existing
-- deployment"). NOT applied by `wrangler d1 migrations apply` from here: move this file into migrations/
-- (renumbered after the last migration there, if it is not 0008) only once a chat migration run on that
-- database has answered `status: completed` and `strays: 0`, and deploy as usual (the migration runs before
-- the code; the code reads neither of these after a completed run, and finds legacy message ids in
-- `message_routes`, which stays).
--
-- What stays in D1: `message_routes` (the chat of every legacy message id: PATCH/DELETE of an old
-- message), `chats` (the directory and its summary), `chat_members` (with the markers the objects write
-- back), and `idempotency_keys` rows of transfers and grants (`outcome_in` set).
DROP TABLE `messages`;--> statement-breakpoint
-- Message-send keys of the old design: in their chats' `send_keys` and their owners' wallets now (and
-- past retention within a day of the upgrade anyway). Only the old code wrote rows with no `outcome_in`.
DELETE FROM `idempotency_keys` WHERE `outcome_in` IS NULL;
