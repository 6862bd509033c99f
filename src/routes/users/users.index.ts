import { createRouter } from "../../lib/create-router";

export const usersRouter = createRouter();
