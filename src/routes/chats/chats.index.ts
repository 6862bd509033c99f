import { createRouter } from "../../lib/create-router";

export const chatsRouter = createRouter();
