import { createRouter } from "../../lib/create-router";

export const realtimeRouter = createRouter();
