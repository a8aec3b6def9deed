/**
 * The chunks the client loads on demand (cross-tab sharing, the poller, downloadOnce's
 * memory) when they cannot load: after a deploy removed them, or offline. Here every
 * one of them fails to import; the tab must go on with what it has, or say why not.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { crossTabTransport } from "../src/crosstab.js";
import { createExportClient } from "../src/index.js";
import type { ExportClient } from "../src/index.js";
import { startLoaded } from "../src/lazy.js";
import type { SharedTransport, StreamSink } from "../src/stream.js";
import { CODE, FakeBrowser, FakeEventSource, completed, fakeFetch, job } from "./fakes.js";

// Hoisted above the imports by vitest, so each factory says it itself.
vi.mock("../src/crosstab-leader.js", () => {
  throw new Error("Failed to fetch dynamically imported module: crosstab-leader");
});
vi.mock("../src/polling.js", () => {
  throw new Error("Failed to fetch dynamically imported module: polling");
});
const imports = vi.hoisted(() => ({ downloadOnce: 0 }));
vi.mock("../src/download-once.js", () => {
  imports.downloadOnce++;
  throw new Error("Failed to fetch dynamically imported module: download-once");
});

afterEach(() => {
  vi.useRealTimers();
});

const noop = (): void => {};

describe("chunks loaded on demand", () => {
  it("startLoaded: a stop before the chunk arrives means it never starts; a failure is reported unless stopped", async () => {
    const started: string[] = [];
    const failed: unknown[] = [];
    const load = Promise.resolve({ name: "chunk" });
    const stopEarly = startLoaded(() => load, (m) => (started.push(m.name), noop), (e) => failed.push(e));
    stopEarly();
    const stopLater = startLoaded(() => load, (m) => (started.push(m.name), () => started.push("stopped")), (e) => failed.push(e));
    const gone = Promise.reject(new Error("gone"));
    startLoaded(() => gone, noop as () => () => void, (e) => failed.push(e))();
    startLoaded(() => gone, noop as () => () => void, (e) => failed.push(e));
    await vi.dynamicImportSettled();
    await Promise.allSettled([load, gone]);
    await new Promise((resolve) => setTimeout(resolve, 0));
    stopLater();
    expect(started).toEqual(["chunk", "stopped"]);
    expect(failed).toEqual([new Error("gone")]);
  });

  it("cross-tab sharing whose chunk cannot load: the tab streams alone", async () => {
    const connected: StreamSink[] = [];
    const stream: SharedTransport = {
      connect: (sink) => {
        connected.push(sink);
        return () => connected.splice(connected.indexOf(sink), 1);
      },
    };
    const browser = new FakeBrowser();
    const transport = crossTabTransport(stream, { key: "", locks: browser.locks(1), BroadcastChannel: browser.channel(1) });
    const stop = transport.connect({ event: noop, state: noop, fatal: noop });
    await vi.waitFor(() => expect(connected).toHaveLength(1));
    expect(transport.stats()).toEqual({ tabs: 1, leader: true });
    stop();
    expect(connected).toHaveLength(0);
    expect(transport.stats()).toEqual({ tabs: 1, leader: false });
  });

  it("a silent stream whose poller cannot load ends with STREAM_CLOSED saying why", async () => {
    vi.useFakeTimers();
    FakeEventSource.reset();
    const { fetch, requests } = fakeFetch(200, job({ seq: 1 }));
    const client: ExportClient = createExportClient({ EventSource: FakeEventSource, fetch });
    const errors: { code: string; message: string }[] = [];
    client.subscribe(CODE, noop, { onError: ({ code, message }) => errors.push({ code, message }) });
    await vi.advanceTimersByTimeAsync(5_000);
    await vi.dynamicImportSettled();
    await vi.advanceTimersByTimeAsync(0);
    expect(errors).toEqual([{ code: "STREAM_CLOSED", message: expect.stringContaining("polling code could not load") }]);
    expect(requests).toEqual([]); // no GET went out
    expect(FakeEventSource.open()).toEqual([]);
    expect(client.stats().subscribed).toEqual([]);
  });

  it("downloadOnce whose chunk cannot load rejects with the import's error, and the next call tries again", async () => {
    const client = createExportClient({ fetch: fakeFetch(200, {}).fetch });
    // vitest wraps a mock factory's throw; the chunk's own error is its cause.
    const importError = (error: unknown): string => String((error as { cause?: unknown }).cause);
    const first = await client.downloadOnce(completed(3)).catch(importError);
    const second = await client.downloadOnce(completed(3)).catch(importError);
    expect([first, second]).toEqual([expect.stringContaining("module: download-once"), expect.stringContaining("module: download-once")]);
    expect(imports.downloadOnce).toBe(2);
  });
});
