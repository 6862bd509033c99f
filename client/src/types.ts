import type { components } from "./generated/api.js";

/** The API's resources, named as the OpenAPI document names them (src/generated/api.ts is generated from it). */
type Schemas = components["schemas"];
export type User = Schemas["User"];
export type Session = Schemas["Session"];
export type Chat = Schemas["Chat"];
export type Message = Schemas["Message"];
export type Wallet = Schemas["Wallet"];
export type LedgerEntry = Schemas["LedgerEntry"];
export type Transfer = Schemas["Transfer"];
export type TransferWithStatus = Schemas["TransferWithStatus"];
export type ChatRead = Schemas["ChatRead"];
export type RealtimeFrame = Schemas["RealtimeFrame"];
export type PongFrame = Schemas["RealtimePongFrame"];
export type ErrorFrame = Schemas["RealtimeErrorFrame"];
/** Every frame the server may send on the socket. */
export type ServerFrame = RealtimeFrame | PongFrame | ErrorFrame;
export type FrameType = ServerFrame["type"];
/** The `data` of the frame of that type (`pong` has none). */
export type FrameData<T extends FrameType> = Extract<ServerFrame, { type: T }> extends { data: infer D } ? D : undefined;
