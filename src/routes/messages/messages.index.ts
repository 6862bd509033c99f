import { createRouter } from "../../lib/create-router";

export const messagesRouter = createRouter();
