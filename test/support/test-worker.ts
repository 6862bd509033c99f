/**
 * The Worker as the test suites run it: the product's own entry, plus TestWalletDO and
 * TestChatDO, which vitest.config.ts binds as WALLET and CHAT. Deployed Workers are built from src/index.ts and contain
 * neither the fault switch nor the movable clock.
 */
export * from "../../src/index";
export { default } from "../../src/index";
export { TestChatDO } from "./test-chat";
export { TestWalletDO } from "./test-wallet";
