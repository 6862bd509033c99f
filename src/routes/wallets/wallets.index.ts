import { createRouter } from "../../lib/create-router";

export const walletsRouter = createRouter();
