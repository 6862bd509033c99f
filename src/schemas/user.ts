import { z } from "@hono/zod-openapi";
import type { UserRow } from "../db/schema";
import { EXAMPLE_TIMESTAMP } from "../lib/envelope";

/**
 * A user of API.md §2. `email` is present only when the caller looks at their own profile or is
 * an admin; everyone else sees the public fields. The password hash never leaves the service.
 */
export const userSchema = z
  .object({
    id: z.string().openapi({ example: "64d15f9e2e6c8f4d5a123456" }),
    displayName: z.string().openapi({ example: "Alice" }),
    role: z.enum(["user", "admin"]).openapi({ example: "user" }),
    status: z
      .enum(["active", "suspended"])
      .openapi({ example: "active", description: "A suspended user can sign in and read but not send messages or credits." }),
    createdAt: z.string().openapi({ example: EXAMPLE_TIMESTAMP }),
    email: z
      .string()
      .optional()
      .openapi({ example: "alice@example.com", description: "Only in your own profile, or for admins." }),
  })
  .openapi("User");

export type User = z.infer<typeof userSchema>;

export function toUser(row: UserRow, options: { includeEmail: boolean }): User {
  const user: User = {
    id: row.id,
    displayName: row.displayName,
    role: row.role,
    status: row.status,
    createdAt: new Date(row.createdAt).toISOString(),
  };
  if (options.includeEmail) user.email = row.email;
  return user;
}
