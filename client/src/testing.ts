/**
 * The testing kit: `import { createFakeExportServer } from "@exportstream/client/testing"`.
 * An in-memory exportstream server for unit tests of UI code, with the real backend's
 * scripted timelines, driven by (fake) timers. Not for production bundles.
 */
export { createFakeExportServer } from "./testing/fake.js";
export type { FakeDownload, FakeExportServer, FakeExportServerOptions, FakeStreamRequest, RelayFault, Scenario } from "./testing/fake.js";
