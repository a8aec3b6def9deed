/**
 * The fallback to polling, with the client's collaborators faked (EventSource, fetch)
 * and fake timers, so the bounds are exact: when it switches, how often it polls, when
 * it retries SSE, that it switches back, and that stopping leaves no timer behind.
 * fallback-browser.test.ts runs it in Chromium through real proxies, BFF and backend.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { registryOf } from "../src/client.js";
import { createExportClient } from "../src/index.js";
import type { ExportClient, ExportClientOptions, FetchLike, Job, TransportKind } from "../src/index.js";
import { CODE, completed, FakeEventSource, job, OTHER_CODE, recorder } from "./fakes.js";

const BASE = "http://bff.test";
const JOB_URL = `${BASE}/api/exports/${CODE}`;
const LIST_URL = `${BASE}/api/exports`;

/** A fetch double whose answers the test changes as the job moves on; it records every URL. */
function scriptedFetch(): { fetch: FetchLike; urls: string[]; answer: (url: string, status: number, body: unknown) => void } {
  const answers = new Map<string, [number, unknown]>();
  const urls: string[] = [];
  const fetch: FetchLike = (url, init) => {
    urls.push(url);
    const [status, body] = answers.get(url) ?? [503, { error: { code: "UNAVAILABLE", message: "no answer scripted" } }];
    const text = JSON.stringify(body);
    return init.signal?.aborted
      ? Promise.reject(new Error("aborted"))
      : Promise.resolve({ ok: status >= 200 && status < 300, status, statusText: "", text: () => Promise.resolve(text) });
  };
  return { fetch, urls, answer: (url, status, body) => answers.set(url, [status, body]) };
}

function client(fetch: FetchLike, options: Partial<ExportClientOptions> = {}): ExportClient {
  return createExportClient({ baseUrl: BASE, EventSource: FakeEventSource, fetch, ...options });
}

/** Subscribes CODE and records its snapshots and every transport it is told of. */
function follow(c: ExportClient, code = CODE): { seqs: () => number[]; transports: TransportKind[]; errors: string[]; stop: () => void } {
  const events = recorder();
  const transports: TransportKind[] = [];
  const errors: string[] = [];
  const stop = c.subscribe(code, events.listener, {
    onTransport: (kind) => transports.push(kind),
    onError: (error) => errors.push(error.code),
  });
  return { seqs: events.seqs, transports, errors, stop };
}

function polls(urls: readonly string[], url = JOB_URL): number {
  return urls.filter((each) => each === url).length;
}

/**
 * Advances the fake clock, then lets a chunk the client loaded meanwhile arrive (the
 * poller: its first GET goes out once its code is there) and what it started run.
 */
async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await vi.dynamicImportSettled();
  await vi.advanceTimersByTimeAsync(0);
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("fallback to polling (per-job)", () => {
  it("stays on SSE and never polls when the first message comes within the bound", async () => {
    const { fetch, urls } = scriptedFetch();
    const c = client(fetch);
    const watched = follow(c);
    await advance(4_900);
    FakeEventSource.instances[0]!.emit(job({ seq: 1 }));
    await advance(60_000);

    expect(watched.transports).toEqual(["sse"]);
    expect(urls).toEqual([]);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(c.stats().transport).toBe("sse");
    watched.stop();
  });

  it("switches to polling when the EventSource delivers no message within firstMessageMs, and polls every 2 s", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 4, progress: 40 }));
    const c = client(fetch);
    const watched = follow(c);
    FakeEventSource.instances[0]!.open(); // headers came (a buffering proxy), no message

    await advance(4_999);
    expect(watched.transports).toEqual(["sse"]);
    expect(urls).toEqual([]);

    await advance(1);
    expect(watched.transports).toEqual(["sse", "polling"]);
    expect(c.stats().transport).toBe("polling");
    expect(FakeEventSource.open()).toEqual([]); // the silent stream is closed
    expect(polls(urls)).toBe(1); // the first GET at once
    expect(watched.seqs()).toEqual([4]);

    answer(JOB_URL, 200, job({ seq: 5, progress: 50 }));
    await advance(2_000);
    expect(polls(urls)).toBe(2);
    expect(watched.seqs()).toEqual([4, 5]);
    watched.stop();
  });

  it("honours firstMessageMs", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 1 }));
    const watched = follow(client(fetch, { fallback: { firstMessageMs: 1_000 } }));
    await advance(1_000);
    expect(watched.transports).toEqual(["sse", "polling"]);
    expect(polls(urls)).toBe(1);
    watched.stop();
  });

  it("switches after 3 errors in a row without a message, not when messages come between them", async () => {
    const { fetch, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 9 }));
    const watched = follow(client(fetch));
    const source = FakeEventSource.instances[0]!;
    source.emit(job({ seq: 1 }));
    for (let seq = 2; seq < 6; seq++) {
      source.drop();
      source.drop();
      source.emit(job({ seq }));
    }
    await advance(0);
    expect(watched.transports).toEqual(["sse"]);

    source.drop();
    source.drop();
    expect(watched.transports).toEqual(["sse"]);
    source.drop();
    await advance(0);
    expect(watched.transports).toEqual(["sse", "polling"]);
    expect(watched.seqs()).toEqual([1, 2, 3, 4, 5, 9]);
    watched.stop();
  });

  it("backs off ×1.5 up to 15 s while nothing changes, and back to 2 s on a change", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 1 }));
    const watched = follow(client(fetch));
    await advance(5_000);
    const times: number[] = [];
    const start = Date.now();
    let seen = polls(urls);
    // Every 100 ms for 60 s: when each GET went out, relative to the first.
    for (let step = 0; step < 600; step++) {
      await advance(100);
      if (polls(urls) > seen) {
        seen = polls(urls);
        times.push(Date.now() - start);
      }
    }
    const gaps = times.map((time, i) => time - (times[i - 1] ?? 0));
    // Unchanged answers: 2 s after the first one's change (new seq), then 3, 4.5, 6.75, 10.125, 15, 15…
    expect(gaps.slice(0, 7)).toEqual([2_000, 3_000, 4_500, 6_800, 10_100, 15_000, 15_000].map((ms) => expect.closeTo(ms, -2.5)));

    answer(JOB_URL, 200, job({ seq: 2 }));
    await advance(15_000); // the GET that sees the change
    const before = polls(urls);
    await advance(2_000);
    expect(polls(urls)).toBe(before + 1);
    watched.stop();
  });

  it("retries SSE in the background after 30 s and switches back when the retry delivers in time; polling stops", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 3 }));
    const c = client(fetch);
    const watched = follow(c);
    await advance(5_000);
    expect(watched.transports).toEqual(["sse", "polling"]);

    await advance(29_999);
    expect(FakeEventSource.instances).toHaveLength(1);
    await advance(1);
    expect(FakeEventSource.instances).toHaveLength(2);
    const retry = FakeEventSource.instances[1]!;
    expect(retry.url).toBe(`${JOB_URL}/events`);
    expect(watched.transports).toEqual(["sse", "polling"]); // not before a message

    retry.emit(job({ seq: 6 }));
    expect(watched.transports).toEqual(["sse", "polling", "sse"]);
    expect(c.stats().transport).toBe("sse");
    const polled = polls(urls);
    await advance(120_000);
    expect(polls(urls)).toBe(polled); // polling stopped
    retry.emit(job({ seq: 7 }));
    expect(watched.seqs()).toEqual([3, 6, 7]);
    expect(FakeEventSource.open()).toEqual([retry]);
    watched.stop();
  });

  it("a background retry that stays silent is closed after firstMessageMs; the next waits twice as long", async () => {
    const { fetch, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 3 }));
    const watched = follow(client(fetch));
    await advance(5_000 + 30_000);
    expect(FakeEventSource.instances).toHaveLength(2);
    await advance(5_000);
    expect(FakeEventSource.open()).toEqual([]);

    await advance(59_999);
    expect(FakeEventSource.instances).toHaveLength(2);
    await advance(1);
    expect(FakeEventSource.instances).toHaveLength(3);
    expect(watched.transports).toEqual(["sse", "polling"]);
    watched.stop();
  });

  it("a background retry that errors is closed at once, polling goes on and the subscription does not end", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 3 }));
    const c = client(fetch);
    const watched = follow(c);
    await advance(5_000 + 30_000);
    FakeEventSource.instances[1]!.drop(); // reconnecting: not good enough for a retry
    expect(FakeEventSource.open()).toEqual([]);

    await advance(60_000);
    expect(FakeEventSource.instances).toHaveLength(3);
    FakeEventSource.instances[2]!.fail(503); // refused for good
    expect(FakeEventSource.open()).toEqual([]);

    const polled = polls(urls);
    await advance(119_999);
    expect(FakeEventSource.instances).toHaveLength(3);
    expect(polls(urls)).toBeGreaterThan(polled);
    await advance(1);
    expect(FakeEventSource.instances).toHaveLength(4);
    expect(watched.errors).toEqual([]);
    expect(c.stats()).toMatchObject({ subscribed: [CODE], transport: "polling" });
    watched.stop();
  });

  it("ends at the terminal snapshot a poll brings: no GET, no retry, no timer after it", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 3 }));
    const c = client(fetch);
    const watched = follow(c);
    await advance(5_000);
    answer(JOB_URL, 200, completed(8));
    await advance(2_000);

    expect(watched.seqs()).toEqual([3, 8]);
    expect(c.stats()).toEqual({ mode: "per-job", subscribed: [], connections: 0, tabs: 1, leader: false, transport: undefined });
    expect(vi.getTimerCount()).toBe(0);
    const polled = urls.length;
    await advance(600_000);
    expect(urls.length).toBe(polled);
    expect(FakeEventSource.instances).toHaveLength(1);
  });

  it.each([
    ["while it waits for the first message", 1_000],
    ["while polling", 6_000],
    ["while a background retry is under way", 36_000],
  ])("unsubscribing %s leaves no timer, no EventSource and no further GET", async (_when, after) => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 3 }));
    const watched = follow(client(fetch));
    await advance(after);
    expect(vi.getTimerCount()).toBeGreaterThan(0);

    watched.stop();
    await advance(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(FakeEventSource.open()).toEqual([]);
    const polled = urls.length;
    await advance(600_000);
    expect(urls.length).toBe(polled);
  });

  it("a GET still in flight when the subscription stops is aborted, and its late answer is dropped", async () => {
    const pending: { signal: AbortSignal | undefined; answer: (body: unknown) => void }[] = [];
    const fetch: FetchLike = (_url, init) =>
      new Promise((resolve) => {
        // Answers only when the test says so, aborted or not (as a fetch that missed the abort).
        pending.push({
          signal: init.signal,
          answer: (body) => resolve({ ok: true, status: 200, statusText: "", text: () => Promise.resolve(JSON.stringify(body)) }),
        });
      });
    const events = recorder();
    const stop = client(fetch).subscribe(CODE, events.listener);
    await advance(5_000);
    expect(pending).toHaveLength(1);

    stop();
    await advance(0);
    expect(pending[0]!.signal?.aborted).toBe(true);
    pending[0]!.answer(job({ seq: 3 }));
    await advance(60_000);
    expect(events.events).toEqual([]);
    expect(pending).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a poll answered 401 SESSION_EXPIRED ends the subscription with that error, as a stream's probe would", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 3 }));
    const c = client(fetch);
    const watched = follow(c);
    await advance(5_000);
    answer(JOB_URL, 401, { error: { code: "SESSION_EXPIRED", message: "the session expired" } });
    await advance(2_000);

    expect(watched.errors).toEqual(["SESSION_EXPIRED"]);
    expect(c.stats().subscribed).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
    const polled = urls.length;
    await advance(600_000);
    expect(urls.length).toBe(polled);
  });

  it("a failing poll (503, network) is retried, backing off, and reports connecting", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    const c = client(fetch);
    const states: string[] = [];
    const stop = c.subscribe(CODE, () => {}, { onConnection: (state) => states.push(state) });
    await advance(5_000 + 3_000 + 4_500 - 1);
    expect(polls(urls)).toBe(2); // no answer scripted: 503, at 5 s and 8 s
    await advance(1);
    expect(polls(urls)).toBe(3);
    expect(states).toEqual(["connecting"]);
    answer(JOB_URL, 200, job({ seq: 3 }));
    await advance(6_750);
    expect(polls(urls)).toBe(4);
    expect(states).toEqual(["connecting", "open"]);
    stop();
  });

  it("fallback: false never polls", async () => {
    const { fetch, urls } = scriptedFetch();
    const watched = follow(client(fetch, { fallback: false }));
    await advance(120_000);
    expect(urls).toEqual([]);
    expect(watched.transports).toEqual(["sse"]);
    watched.stop();
  });
});

describe("fallback to polling (multiplex)", () => {
  const list = (...jobs: Job[]): { exports: Job[] } => ({ exports: jobs });

  it("polls the session's list for every subscription, tells each the transport, and comes back to SSE", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 1 }));
    answer(`${BASE}/api/exports/${OTHER_CODE}`, 200, job({ code: OTHER_CODE, seq: 1 }));
    answer(LIST_URL, 200, list(job({ seq: 2 }), job({ code: OTHER_CODE, seq: 5 })));
    const c = client(fetch, { mode: "multiplex" });
    const first = follow(c);
    const second = follow(c, OTHER_CODE);
    await advance(4_999);
    // The list is newest first; the client learns it oldest first, as list() does, so
    // the bound of known jobs drops the oldest.
    const learnt: string[] = [];
    const unobserve = registryOf(c).known.observe((seen) => learnt.push(seen.type === "snapshot" ? seen.job.code : "-"));
    await advance(1);
    unobserve();
    expect(learnt).toEqual([OTHER_CODE, CODE]);

    expect(first.transports).toEqual(["sse", "polling"]);
    expect(second.transports).toEqual(["sse", "polling"]);
    expect(polls(urls, LIST_URL)).toBe(1);
    expect(first.seqs()).toEqual([1, 2]);
    expect(second.seqs()).toEqual([1, 5]);
    expect(c.stats().transport).toBe("polling");

    // A subscriber that joins while polling is told so at once.
    const third = follow(c);
    await advance(0);
    expect(third.transports).toEqual(["polling"]);

    await advance(30_000);
    const retry = FakeEventSource.instances.at(-1)!;
    expect(retry.url).toBe(`${BASE}/api/events`);
    retry.emit(job({ code: OTHER_CODE, seq: 6 }));
    expect(second.transports).toEqual(["sse", "polling", "sse"]);
    expect(c.stats().transport).toBe("sse");
    const polled = polls(urls, LIST_URL);
    await advance(60_000);
    expect(polls(urls, LIST_URL)).toBe(polled);

    for (const each of [first, second, third]) each.stop();
    await advance(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(FakeEventSource.open()).toEqual([]);
  });

  it("the last unsubscribe while polling stops the polling", async () => {
    const { fetch, urls, answer } = scriptedFetch();
    answer(JOB_URL, 200, job({ seq: 1 }));
    answer(LIST_URL, 200, list(job({ seq: 2 })));
    const c = client(fetch, { mode: "multiplex" });
    const watched = follow(c);
    await advance(7_000);
    expect(polls(urls, LIST_URL)).toBe(2);

    watched.stop();
    await advance(0);
    expect(vi.getTimerCount()).toBe(0);
    await advance(600_000);
    expect(polls(urls, LIST_URL)).toBe(2);
  });
});
