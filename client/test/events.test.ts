/**
 * client.events() as an async iterable, and AbortSignal on every call: aborted before
 * the call, and aborted while it is under way.
 */
import { describe, expect, it } from "vitest";
import { createExportClient, ExportError } from "../src/index.js";
import type { ExportClient, FetchLike, Job } from "../src/index.js";
import { CODE, completed, fakeClient, FakeEventSource, flush, job, onlySource, recorder } from "./fakes.js";

/** Pulls `count` snapshots (or fewer, if it ends) from the iterator. */
async function take(iterator: AsyncIterator<Job>, count: number): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = 0; i < count; i++) {
    const next = await iterator.next();
    if (next.done) break;
    seqs.push(next.value.seq);
  }
  return seqs;
}

describe("events()", () => {
  it("yields every newer snapshot and ends after COMPLETED, closing the stream", async () => {
    const client = fakeClient();
    const seen: string[] = [];
    const loop = (async () => {
      for await (const each of client.events(CODE)) seen.push(`${each.seq}:${each.status}`);
    })();
    await flush();
    const source = onlySource();
    source.emit(job({ seq: 1, progress: 10 }));
    source.emit(job({ seq: 1, progress: 10 })); // a replay after a reconnect: not newer
    source.emit(job({ seq: 2, progress: 50 }));
    source.emit(completed(3));
    await loop;
    expect(seen).toEqual(["1:IN_PROGRESS", "2:IN_PROGRESS", "3:COMPLETED"]);
    expect(source.closed).toBe(true);
    expect(client.stats().subscribed).toEqual([]);
  });

  it.each(["FAILED", "CANCELLED"] as const)("ends normally after %s: the job is the answer", async (status) => {
    const client = fakeClient();
    const events = client.events(CODE);
    const first = events.next();
    await flush();
    onlySource().emit(job({ seq: 4, status, error: { code: "GENERATION_FAILED", message: "x" } }));
    expect(await first).toMatchObject({ done: false, value: { status } });
    expect(await events.next()).toEqual({ done: true, value: undefined });
  });

  it("throws the stream's ExportError on ERROR, once, then is done", async () => {
    const client = fakeClient();
    const events = client.events(CODE);
    const first = events.next();
    await flush();
    onlySource().emit(job({ seq: 1, progress: 5 }));
    onlySource().emit({ code: CODE, status: "ERROR", error: { code: "BACKEND_UNAVAILABLE", message: "gone" } });
    expect(await first).toMatchObject({ value: { seq: 1 } });
    const error = await events.next().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "BACKEND_UNAVAILABLE", status: "ERROR" });
    expect(await events.next()).toMatchObject({ done: true });
  });

  it("throws the stream's error when the stream is refused: NOT_FOUND for a 404, STREAM_CLOSED otherwise", async () => {
    const client = fakeClient();
    const pending = client.events(CODE).next();
    await flush();
    onlySource().fail(404);
    await expect(pending).rejects.toMatchObject({ code: "NOT_FOUND" });
    const other = client.events(CODE).next();
    await flush();
    FakeEventSource.instances.at(-1)!.fail(500);
    await expect(other).rejects.toMatchObject({ code: "STREAM_CLOSED" });
  });

  it("unsubscribes on break, and opens nothing before the first next()", async () => {
    const client = fakeClient();
    const events = client.events(CODE);
    await flush();
    expect(FakeEventSource.instances).toHaveLength(0);
    const seen: number[] = [];
    const loop = (async () => {
      for await (const each of events) {
        seen.push(each.seq);
        break; // for-await's break calls return()
      }
    })();
    await flush();
    const source = onlySource();
    source.emit(job({ seq: 1 }));
    await loop;
    await flush();
    expect(seen).toEqual([1]);
    expect(source.closed).toBe(true);
    expect(client.stats().subscribed).toEqual([]);
  });

  it("shares the code's stream with subscribe()", async () => {
    const client = fakeClient();
    const other = recorder();
    client.subscribe(CODE, other.listener);
    const pending = take(client.events(CODE), 2);
    await flush();
    onlySource().emit(job({ seq: 1 }));
    onlySource().emit(completed(2));
    expect(await pending).toEqual([1, 2]);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(other.seqs()).toEqual([1, 2]);
  });
});

describe("AbortSignal", () => {
  it("events(): aborted before, it opens no stream and throws ABORTED", async () => {
    const client = fakeClient();
    await expect(client.events(CODE, { signal: AbortSignal.abort() }).next()).rejects.toMatchObject({ code: "ABORTED", status: 0 });
    expect(FakeEventSource.instances).toHaveLength(0);
  });

  it("events(): aborted during, a pending next() throws ABORTED and the stream closes", async () => {
    const client = fakeClient();
    const controller = new AbortController();
    const events = client.events(CODE, { signal: controller.signal });
    const first = events.next();
    await flush();
    onlySource().emit(job({ seq: 1 }));
    await first;
    const pending = events.next();
    controller.abort(new Error("user left"));
    const error = await pending.catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ABORTED" });
    expect((error as ExportError).cause).toEqual(new Error("user left"));
    expect(FakeEventSource.instances[0]!.closed).toBe(true);
    expect(await events.next()).toMatchObject({ done: true });
  });

  it("subscribe(): aborted before, nothing opens and the listener is never called", async () => {
    const client = fakeClient();
    const each = recorder();
    const stop = client.subscribe(CODE, each.listener, { signal: AbortSignal.abort() });
    await flush();
    expect(FakeEventSource.instances).toHaveLength(0);
    expect(each.events).toEqual([]);
    stop();
  });

  it("subscribe(): aborted during, the listener hears nothing more and the stream closes", async () => {
    const client = fakeClient();
    const controller = new AbortController();
    const each = recorder();
    const states: string[] = [];
    client.subscribe(CODE, each.listener, { signal: controller.signal, onConnection: (state) => states.push(state) });
    await flush();
    const source = onlySource();
    source.emit(job({ seq: 1 }));
    controller.abort();
    await flush();
    expect(source.closed).toBe(true);
    expect(each.seqs()).toEqual([1]);
    expect(client.stats().subscribed).toEqual([]);
  });

  it("subscribe(): a signal that outlives the subscription is let go of at its end", async () => {
    const client = fakeClient();
    const controller = new AbortController();
    const attached = new Set<unknown>();
    const { signal } = controller;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = (type: string, handler: EventListenerOrEventListenerObject, options?: AddEventListenerOptions | boolean) => {
      attached.add(handler);
      add(type, handler, options);
    };
    signal.removeEventListener = (type: string, handler: EventListenerOrEventListenerObject, options?: EventListenerOptions | boolean) => {
      attached.delete(handler);
      remove(type, handler, options);
    };
    client.subscribe(CODE, recorder().listener, { signal });
    expect(attached.size).toBe(1);
    await flush();
    onlySource().emit(completed(2));
    expect(attached.size).toBe(0);
  });

  describe.each<[string, (client: ExportClient, signal: AbortSignal) => Promise<unknown>]>([
    ["start", (client, signal) => client.start({ rows: 1, durationMs: 1 }, { signal })],
    ["get", (client, signal) => client.get(CODE, { signal })],
    ["list", (client, signal) => client.list({ signal })],
    ["cancel", (client, signal) => client.cancel(CODE, { signal })],
    ["renewSession", (client, signal) => client.renewSession({ signal })],
    ["waitFor", (client, signal) => client.waitFor(CODE, { signal })],
  ])("%s()", (_name, call) => {
    it("rejects ABORTED when aborted before", async () => {
      const { client } = hangingClient();
      await expect(call(client, AbortSignal.abort())).rejects.toMatchObject({ code: "ABORTED", status: 0 });
    });

    it("rejects ABORTED when aborted while under way", async () => {
      const { client } = hangingClient();
      const controller = new AbortController();
      const settled = call(client, controller.signal);
      await flush();
      controller.abort();
      await expect(settled).rejects.toMatchObject({ code: "ABORTED", status: 0 });
      expect(FakeEventSource.open()).toHaveLength(0);
    });
  });

  it("start(): a POST waiting behind the session's first one is aborted without waiting for it", async () => {
    const hanging = hangingClient();
    const { client } = hanging;
    void client.start({ rows: 1, durationMs: 1 }).catch(() => {}); // the first POST, never answered
    const controller = new AbortController();
    const second = client.start({ rows: 2, durationMs: 1 }, { signal: controller.signal });
    await flush();
    controller.abort();
    await expect(second).rejects.toMatchObject({ code: "ABORTED" });
    expect(hanging.requests).toBe(1); // the second never went out
  });
});

/** A client whose fetch answers nothing until the request's signal aborts. */
function hangingClient(): { client: ExportClient; readonly requests: number } {
  let requests = 0;
  const fetch: FetchLike = (_url, init) => {
    requests += 1;
    return new Promise((_resolve, reject) => {
      if (init.signal?.aborted) reject(init.signal.reason);
      init.signal?.addEventListener("abort", () => reject(init.signal?.reason));
    });
  };
  const client = createExportClient({ baseUrl: "http://bff.test", fetch, EventSource: FakeEventSource });
  return {
    client,
    get requests() {
      return requests;
    },
  };
}
