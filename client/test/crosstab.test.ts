/**
 * Cross-tab sharing with in-memory doubles of the browser's Web Locks and
 * BroadcastChannel (several "tabs" in one process) and of `/api/events` (a snapshot of
 * every job on each connect). The real proof is test/crosstab-browser.test.ts in
 * Chromium; this pins the protocol: one stream, replay to a late tab, the stream kept
 * for the others, the takeover after a crash, the fallback.
 */
import { describe, expect, it, vi } from "vitest";
import { crossTabTransport } from "../src/crosstab.js";
import type { CrossTabTransport } from "../src/crosstab.js";
import { DownloadLog } from "../src/download-once.js";
import type { StorageLike } from "../src/download-once.js";
import { ExportError } from "../src/errors.js";
import type { SharedTransport, StreamSink } from "../src/stream.js";
import { SubscriptionRegistry } from "../src/subscriptions.js";
import type { ExportEvent } from "../src/subscription.js";
import type { Job } from "../src/types.js";
import { CODE, FakeBrowser, OTHER_CODE, completed, job } from "./fakes.js";

/** `/api/events` of one session: every job's snapshot on connect, then each change. */
class FakeSessionStream implements SharedTransport {
  readonly jobs = new Map<string, Job>();
  readonly open = new Set<StreamSink>();
  connects = 0;

  connect(sink: StreamSink): () => void {
    this.connects++;
    this.open.add(sink);
    queueMicrotask(() => {
      if (!this.open.has(sink)) return;
      sink.state("open");
      for (const each of this.jobs.values()) sink.event(each);
    });
    return () => this.open.delete(sink);
  }

  emit(next: Job): void {
    this.jobs.set(next.code, next);
    for (const sink of this.open) sink.event(next);
  }
}

interface Tab {
  readonly id: number;
  readonly transport: CrossTabTransport;
  readonly registry: SubscriptionRegistry;
  /** What this tab's listeners got, per subscribe. */
  readonly events: ExportEvent[];
  follow(code: string): () => void;
}

function tab(browser: FakeBrowser, stream: SharedTransport, id: number): Tab {
  const transport = crossTabTransport(stream, { key: "", locks: browser.locks(id), BroadcastChannel: browser.channel(id), recheckMs: 3_600_000 });
  const registry = new SubscriptionRegistry({ mode: "multiplex", transport, seed: () => new Promise<Job>(() => {}) });
  const events: ExportEvent[] = [];
  return { id, transport, registry, events, follow: (code) => registry.subscribe(code, (event) => events.push(event)) };
}

const running = (seq: number, code = CODE): Job => job({ seq, code, status: "IN_PROGRESS", progress: seq });
/** The seqs a tab's listeners got, of one code (an error: -1). */
const seqs = (events: readonly ExportEvent[], code = CODE): number[] =>
  events.flatMap((each) => (each.type === "error" ? [-1] : each.job.code === code ? [each.job.seq] : []));

describe("cross-tab sharing", () => {
  it("gives every tab the events of one stream, a late tab the latest snapshot first, and counts the tabs", async () => {
    const browser = new FakeBrowser();
    const stream = new FakeSessionStream();
    stream.jobs.set(CODE, running(1));
    const [a, b, c] = [tab(browser, stream, 1), tab(browser, stream, 2), tab(browser, stream, 3)];
    a.follow(CODE);
    b.follow(CODE);
    await vi.waitFor(() => expect([a, b].map((each) => each.transport.stats().tabs)).toEqual([2, 2]));
    stream.emit(running(2));
    await vi.waitFor(() => expect(seqs(b.events)).toEqual([1, 2]));
    c.follow(CODE); // joins later: the leader replays what /api/events sent
    await vi.waitFor(() => expect(seqs(c.events)).toEqual([2]));
    await vi.waitFor(() => expect(c.registry.openConnections()).toBe(1));
    stream.emit(completed(3));
    for (const each of [a, b, c]) await vi.waitFor(() => expect(seqs(each.events).at(-1)).toBe(3));
    expect([seqs(a.events), seqs(b.events), seqs(c.events)]).toEqual([[1, 2, 3], [1, 2, 3], [2, 3]]);
    expect(stream.connects).toBe(1);
    expect([a, b, c].map((each) => each.transport.stats().leader)).toEqual([true, false, false]);
  });

  it("keeps the stream while another tab needs it, closes it when none does", async () => {
    const browser = new FakeBrowser();
    const stream = new FakeSessionStream();
    const [a, b] = [tab(browser, stream, 1), tab(browser, stream, 2)];
    const stopA = a.follow(CODE);
    const stopB = b.follow(CODE);
    await vi.waitFor(() => expect(b.transport.stats().tabs).toBe(2));
    stopA(); // the leader's page no longer needs it; b does
    await vi.waitFor(() => expect(a.transport.stats().tabs).toBe(1));
    expect(stream.open.size).toBe(1);
    expect(a.transport.stats().leader).toBe(true);
    stream.emit(running(4));
    await vi.waitFor(() => expect(seqs(b.events)).toEqual([4]));
    expect(a.events).toEqual([]);
    stopB();
    await vi.waitFor(() => expect(stream.open.size).toBe(0));
    expect(a.transport.stats()).toEqual({ tabs: 1, leader: false });
  });

  it("after the leader crashed, another tab opens the stream: no terminal snapshot lost, none delivered twice", async () => {
    const browser = new FakeBrowser();
    const stream = new FakeSessionStream();
    stream.jobs.set(CODE, running(1));
    stream.jobs.set(OTHER_CODE, running(1, OTHER_CODE));
    const tabs = [tab(browser, stream, 1), tab(browser, stream, 2), tab(browser, stream, 3)];
    for (const each of tabs) each.follow(CODE);
    for (const each of tabs) each.follow(OTHER_CODE);
    await vi.waitFor(() => expect(tabs.map((each) => each.transport.stats().tabs)).toEqual([3, 3, 3]));
    stream.emit(running(2));
    stream.emit(running(2, OTHER_CODE));
    await vi.waitFor(() => expect(tabs.map((each) => seqs(each.events, OTHER_CODE))).toEqual([[1, 2], [1, 2], [1, 2]]));
    // The leader dies as CODE completes: its stream goes with it, before it broadcast.
    browser.crash(1);
    stream.open.clear();
    stream.jobs.set(CODE, completed(3));
    const rest = tabs.slice(1);
    // The new stream sends CODE's COMPLETED and OTHER_CODE's seq 2 again, then a newer one.
    await vi.waitFor(() => expect(stream.connects).toBe(2));
    await vi.waitFor(() => expect(stream.open.size).toBe(1));
    stream.emit(running(3, OTHER_CODE));
    for (const each of rest) await vi.waitFor(() => expect(seqs(each.events, OTHER_CODE)).toEqual([1, 2, 3]));
    for (const each of rest) expect(seqs(each.events, CODE)).toEqual([1, 2, 3]);
    expect(rest.filter((each) => each.transport.stats().leader)).toHaveLength(1);
    stream.emit(completed(3)); // sent again (as on another reconnect): nobody takes it twice
    stream.emit(running(4, OTHER_CODE));
    for (const each of rest) await vi.waitFor(() => expect(seqs(each.events, OTHER_CODE)).toEqual([1, 2, 3, 4]));
    for (const each of rest) expect(seqs(each.events, CODE)).toEqual([1, 2, 3]);
    expect(rest.map((each) => each.registry.openCodes())).toEqual([[OTHER_CODE], [OTHER_CODE]]);
  });

  it("a tab that stops and needs the stream again while its lock is being granted does not count twice", async () => {
    const browser = new FakeBrowser();
    const stream = new FakeSessionStream();
    const transport = crossTabTransport(stream, { key: "", locks: browser.locks(1), BroadcastChannel: browser.channel(1), recheckMs: 3_600_000 });
    const noop = (): void => {};
    const sink = { event: noop, state: noop, fatal: noop };
    transport.connect(sink)(); // StrictMode: subscribe, unsubscribe, subscribe in one tick
    const stop = transport.connect(sink);
    await vi.waitFor(() => expect(stream.open.size).toBe(1));
    await vi.waitFor(() => expect(transport.stats()).toEqual({ tabs: 1, leader: true }));
    stop();
    await vi.waitFor(() => expect(stream.open.size).toBe(0));
    expect(transport.stats()).toEqual({ tabs: 1, leader: false });
  });

  it("forwards any sink method, not only event/state/fatal, and replays its latest call to a late tab", async () => {
    const browser = new FakeBrowser();
    const stream = new FakeSessionStream();
    const got: Record<number, string[]> = { 1: [], 2: [], 3: [] };
    const noop = (): void => {};
    const transports = [1, 2, 3].map((id) =>
      crossTabTransport(stream, { key: "", locks: browser.locks(id), BroadcastChannel: browser.channel(id), recheckMs: 3_600_000 }),
    );
    // A sink with a method the StreamSink type may gain (e.g. which transport carries it).
    const sinkOf = (id: number) => ({ event: noop, state: noop, fatal: noop, transport: (kind: string) => got[id]!.push(kind) });
    transports[0]!.connect(sinkOf(1));
    transports[1]!.connect(sinkOf(2));
    await vi.waitFor(() => expect(transports[1]!.stats().tabs).toBe(2));
    for (const sink of stream.open) (sink as unknown as { transport(kind: string): void }).transport("polling");
    await vi.waitFor(() => expect(got[2]).toEqual(["polling"]));
    expect(got[1]).toEqual(["polling"]);
    transports[2]!.connect(sinkOf(3));
    await vi.waitFor(() => expect(got[3]).toEqual(["polling"]));
  });

  it("carries a fatal error to every tab as an ExportError", async () => {
    const browser = new FakeBrowser();
    const stream = new FakeSessionStream();
    const [a, b] = [tab(browser, stream, 1), tab(browser, stream, 2)];
    a.follow(CODE);
    b.follow(CODE);
    await vi.waitFor(() => expect(b.transport.stats().tabs).toBe(2));
    const expired = new ExportError("SESSION_EXPIRED", "session expired", { status: 401 });
    for (const sink of stream.open) sink.fatal(expired);
    for (const each of [a, b]) await vi.waitFor(() => expect(each.events).toHaveLength(1));
    const got = b.events[0];
    expect(got?.type === "error" && got.error).toBeInstanceOf(ExportError);
    expect(got?.type === "error" && [got.error.code, got.error.status]).toEqual(["SESSION_EXPIRED", 401]);
  });

  it("falls back to a stream per tab without Web Locks or BroadcastChannel, and when turned off", () => {
    const stream = new FakeSessionStream();
    const browser = new FakeBrowser();
    const transports = [
      crossTabTransport(stream, { key: "", locks: undefined, BroadcastChannel: undefined }),
      crossTabTransport(stream, { key: "", enabled: false, locks: browser.locks(1), BroadcastChannel: browser.channel(1) }),
    ];
    const noop = (): void => {};
    const stops = transports.map((each) => each.connect({ event: noop, state: noop, fatal: noop }));
    expect(stream.connects).toBe(2);
    expect(transports.map((each) => each.stats())).toEqual([
      { tabs: 1, leader: true },
      { tabs: 1, leader: true },
    ]);
    for (const stop of stops) stop();
    expect(stream.open.size).toBe(0);
  });
});

describe("DownloadLog (downloadOnce)", () => {
  const memoryStorage = (): StorageLike & { items: Map<string, string> } => {
    const items = new Map<string, string>();
    return { items, getItem: (key) => items.get(key) ?? null, setItem: (key, value) => void items.set(key, value) };
  };

  it("downloads a code once across the tabs and reloads of a browser", async () => {
    const browser = new FakeBrowser();
    const storage = memoryStorage();
    const downloads: string[] = [];
    const logs = [1, 2, 3].map((id) => new DownloadLog("", { locks: browser.locks(id), storage }));
    const results = await Promise.all(logs.flatMap((log) => [log.once(CODE, () => downloads.push(CODE)), log.once(CODE, () => downloads.push(CODE))]));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(downloads).toEqual([CODE]);
    // A reload: a new instance, the same storage.
    expect(await new DownloadLog("", { locks: browser.locks(4), storage }).once(CODE, () => downloads.push(CODE))).toBe(false);
    expect(downloads).toHaveLength(1);
  });

  it("keeps the last 200 codes; without storage or locks, once per instance", async () => {
    const browser = new FakeBrowser();
    const storage = memoryStorage();
    const log = new DownloadLog("", { locks: browser.locks(1), storage });
    for (let i = 0; i < 205; i++) await log.once(`code-${i}`, () => {});
    const kept = JSON.parse([...storage.items.values()][0] ?? "[]") as string[];
    expect(kept).toHaveLength(200);
    expect(kept[0]).toBe("code-5");
    expect(await new DownloadLog("", { locks: browser.locks(2), storage }).once("code-0", () => {})).toBe(true);

    const alone = new DownloadLog("", { locks: undefined, storage: undefined });
    expect(await Promise.all([alone.once(CODE, () => {}), alone.once(CODE, () => {})])).toEqual([true, false]);
    expect(await new DownloadLog("", { locks: undefined, storage: undefined }).once(CODE, () => {})).toBe(true);
  });

  it("may try again when the download threw", async () => {
    const log = new DownloadLog("", { locks: new FakeBrowser().locks(1), storage: memoryStorage() });
    await expect(log.once(CODE, () => { throw new TypeError("no document"); })).rejects.toThrow(/no document/);
    expect(await log.once(CODE, () => {})).toBe(true);
  });
});
