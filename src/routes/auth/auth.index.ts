import { createRouter } from "../../lib/create-router";

export const authRouter = createRouter();
