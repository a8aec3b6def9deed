import { describe, expect, it } from "vitest";
import { ExportError } from "../src/index.js";
import type { Job } from "../src/index.js";
import { CODE, FakeEventSource, OTHER_CODE, catchingUncaught, completed, fakeClient, flush, job, onlySource, recorder, subscribed } from "./fakes.js";

describe("subscribe: one stream per code", () => {
  it("opens exactly one EventSource for three subscribes to the same code", () => {
    const { client } = subscribed([CODE, CODE, CODE]);

    expect(FakeEventSource.instances).toHaveLength(1);
    expect(FakeEventSource.instances[0]!.url).toBe(`http://bff.test/api/exports/${CODE}/events`);
    expect(client.stats().subscribed).toEqual([CODE]);
  });

  it("opens one EventSource per distinct code", () => {
    const client = fakeClient();
    client.subscribe(CODE, () => {});
    client.subscribe(OTHER_CODE, () => {});
    client.subscribe(CODE, () => {});

    expect(FakeEventSource.instances.map((source) => source.url)).toEqual([
      `http://bff.test/api/exports/${CODE}/events`,
      `http://bff.test/api/exports/${OTHER_CODE}/events`,
    ]);
  });

  it("delivers every snapshot once, in order, to every listener", () => {
    const { source, recorders: [a, b] } = subscribed([CODE, CODE]);

    source.emit(job({ seq: 1, status: "PENDING" }));
    source.emit(job({ seq: 2, progress: 10 }));
    source.emit(job({ seq: 3, progress: 20 }));

    expect(a.seqs()).toEqual([1, 2, 3]);
    expect(b.seqs()).toEqual([1, 2, 3]);
  });

  it("gives a late joiner the latest snapshot on the next microtask, not synchronously", async () => {
    const client = fakeClient();
    client.subscribe(CODE, () => {});
    const source = onlySource();
    source.emit(job({ seq: 1, status: "PENDING" }));
    source.emit(job({ seq: 2, progress: 40 }));

    const late = recorder();
    client.subscribe(CODE, late.listener);
    expect(late.events).toEqual([]);

    await flush();
    expect(late.events).toEqual([{ type: "snapshot", job: job({ seq: 2, progress: 40 }) }]);
    expect(FakeEventSource.instances).toHaveLength(1);
  });

  it("does not give a late joiner the same snapshot twice when a newer one beats its microtask", async () => {
    const client = fakeClient();
    client.subscribe(CODE, () => {});
    const source = onlySource();
    source.emit(job({ seq: 1 }));

    const late = recorder();
    client.subscribe(CODE, late.listener);
    source.emit(job({ seq: 2 }));
    await flush();

    expect(late.seqs()).toEqual([2]);
  });

  it("gives a joiner nothing before the first snapshot, then the first snapshot", async () => {
    const client = fakeClient();
    const first = recorder();
    const second = recorder();
    client.subscribe(CODE, first.listener);
    client.subscribe(CODE, second.listener);
    await flush();
    expect(second.events).toEqual([]);

    onlySource().emit(job({ seq: 1 }));
    expect(first.seqs()).toEqual([1]);
    expect(second.seqs()).toEqual([1]);
  });
});

describe("subscribe: how a subscription ends", () => {
  it.each(["COMPLETED", "FAILED", "CANCELLED"] as const)(
    "%s reaches every listener, then closes the EventSource and deletes the entry",
    (status) => {
      const { client, source, recorders: [a, b] } = subscribed([CODE, CODE]);
      source.emit(job({ seq: 1 }));

      const terminal: Job =
        status === "COMPLETED"
          ? completed(2)
          : job({ seq: 2, status, error: { code: "GENERATION_FAILED", message: "boom" } });
      source.emit(terminal);

      expect(a.events.at(-1)).toEqual({ type: "snapshot", job: terminal, etaMs: 0 });
      expect(b.events.at(-1)).toEqual({ type: "snapshot", job: terminal, etaMs: 0 });
      expect(source.closed).toBe(true);
      expect(client.stats().subscribed).toEqual([]);
    },
  );

  it("turns an ERROR event into an ExportError with the server's code, then closes and deletes", () => {
    const { client, source, recorders: [a] } = subscribed([CODE]);
    source.emit(job({ seq: 1 }));

    source.emit({ code: CODE, status: "ERROR", error: { code: "UPSTREAM_UNAVAILABLE", message: "backend gone" } });

    const last = a.events.at(-1);
    expect(last?.type).toBe("error");
    const error = last?.type === "error" ? last.error : undefined;
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "UPSTREAM_UNAVAILABLE", jobStatus: "ERROR" });
    expect(error?.message).toContain("backend gone");
    expect(source.closed).toBe(true);
    expect(client.stats().subscribed).toEqual([]);
  });

  it("keeps the subscription through a transient drop (the EventSource reconnects by itself)", () => {
    const { client, source, recorders: [a] } = subscribed([CODE]);
    source.emit(job({ seq: 1 }));

    source.drop();
    source.emit(job({ seq: 2 }));

    expect(a.events.map((event) => event.type)).toEqual(["snapshot", "snapshot"]);
    expect(source.closed).toBe(false);
    expect(client.stats().subscribed).toEqual([CODE]);
  });

  it("notifies listeners of a fatal error (closed without a terminal event) and deletes the entry", () => {
    const { client, source, recorders: [a, b] } = subscribed([CODE, CODE]);

    source.fail(502);

    for (const { events } of [a, b]) {
      expect(events).toHaveLength(1);
      const event = events[0]!;
      expect(event.type).toBe("error");
      if (event.type !== "error") return;
      expect(event.error).toBeInstanceOf(ExportError);
      expect(event.error).toMatchObject({ code: "STREAM_CLOSED", jobStatus: "ERROR" });
      expect(event.error.message).toContain("HTTP 502");
    }
    expect(client.stats().subscribed).toEqual([]);
  });

  it("says NOT_FOUND, with the hint about the session cookie, for a stream refused with HTTP 404", () => {
    // What a Node client whose EventSource sends no cookie gets: the BFF knows no session.
    const { client, source, recorders: [a] } = subscribed([CODE]);
    source.fail(404);
    const event = a.events[0];
    expect(event?.type === "error" && event.error).toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
    expect(event?.type === "error" && event.error.message).toContain("session cookie");
    expect(client.stats().subscribed).toEqual([]);
  });

  it("closes the EventSource only when the last listener unsubscribes (reference counting)", async () => {
    const client = fakeClient();
    const unsubscribeA = client.subscribe(CODE, () => {});
    const unsubscribeB = client.subscribe(CODE, () => {});
    const unsubscribeC = client.subscribe(CODE, () => {});
    const source = onlySource();

    unsubscribeA();
    unsubscribeB();
    expect(source.closed).toBe(false);
    expect(client.stats().subscribed).toEqual([CODE]);

    unsubscribeC();
    // Closed one microtask later, so a subscribe in the same tick can still join it.
    await flush();
    expect(source.closed).toBe(true);
    expect(client.stats().subscribed).toEqual([]);
  });

  it("ignores a second call of the same unsubscribe instead of releasing another listener", () => {
    const client = fakeClient();
    const unsubscribeA = client.subscribe(CODE, () => {});
    client.subscribe(CODE, () => {});
    const source = onlySource();

    unsubscribeA();
    unsubscribeA();

    expect(source.closed).toBe(false);
  });

  it("never calls a listener after it unsubscribed", async () => {
    const client = fakeClient();
    const a = recorder();
    const unsubscribeA = client.subscribe(CODE, a.listener);
    client.subscribe(CODE, () => {});
    const source = onlySource();
    source.emit(job({ seq: 1 }));

    unsubscribeA();
    source.emit(job({ seq: 2 }));
    source.emit(completed(3));
    expect(a.seqs()).toEqual([1]);

    // A late joiner that leaves before its microtask gets nothing either.
    client.subscribe(OTHER_CODE, () => {});
    const other = FakeEventSource.open().find((s) => s.url.includes(OTHER_CODE))!;
    other.emit(job({ code: OTHER_CODE, seq: 1 }));
    const late = recorder();
    client.subscribe(OTHER_CODE, late.listener)();
    await flush();
    expect(late.events).toEqual([]);
  });

  it("never calls a listener unsubscribed by another listener during the same dispatch", () => {
    const client = fakeClient();
    const b = recorder();
    let unsubscribeB = (): void => {};
    client.subscribe(CODE, () => unsubscribeB());
    unsubscribeB = client.subscribe(CODE, b.listener);

    onlySource().emit(job({ seq: 1 }));

    expect(b.events).toEqual([]);
  });

  it.each([
    ["a terminal status", (source: FakeEventSource) => source.emit(completed(1))],
    ["an ERROR event", (source: FakeEventSource) => source.emit({ code: CODE, status: "ERROR", error: { code: "GONE", message: "gone" } })],
    ["a fatal error", (source: FakeEventSource) => source.fail(404)],
  ])("opens a new EventSource for a subscribe after %s deleted the entry", (_name, end) => {
    const client = fakeClient();
    client.subscribe(CODE, () => {});
    end(onlySource());

    const fresh = recorder();
    client.subscribe(CODE, fresh.listener);

    expect(FakeEventSource.instances).toHaveLength(2);
    const second = onlySource();
    expect(second).toBe(FakeEventSource.instances[1]);
    second.emit(job({ seq: 1 }));
    expect(fresh.seqs()).toEqual([1]);
  });

  it.each(["per-job", "multiplex"] as const)("opens a new EventSource for a subscribe after the last listener left (%s)", async (mode) => {
    const client = fakeClient({ mode });
    client.subscribe(CODE, () => {})();
    await flush();
    client.subscribe(CODE, () => {});
    expect(FakeEventSource.instances).toHaveLength(2);
    expect(FakeEventSource.instances[0]!.closed).toBe(true);
    expect(FakeEventSource.instances[1]!.closed).toBe(false);
  });

  it("keeps one EventSource through a StrictMode-like subscribe, unsubscribe, subscribe in one tick", async () => {
    const client = fakeClient();
    const a = recorder();
    client.subscribe(CODE, () => {})();
    client.subscribe(CODE, a.listener);
    await flush();

    expect(FakeEventSource.instances).toHaveLength(1);
    const source = onlySource();
    source.emit(job({ seq: 1 }));
    expect(a.seqs()).toEqual([1]);
    expect(client.stats().subscribed).toEqual([CODE]);
  });

  it("gives a listener that rejoins in the same tick the latest snapshot again", async () => {
    const client = fakeClient();
    const first = recorder();
    const unsubscribe = client.subscribe(CODE, first.listener);
    onlySource().emit(job({ seq: 4, progress: 40 }));
    unsubscribe();
    const second = recorder();
    client.subscribe(CODE, second.listener);
    await flush();

    expect(second.seqs()).toEqual([4]);
    expect(FakeEventSource.instances).toHaveLength(1);
  });

  it("delivers to the other listeners when one listener throws, and rethrows that error outside", async () => {
    const thrown = await catchingUncaught(async () => {
      const client = fakeClient();
      const a = recorder();
      const b = recorder();
      client.subscribe(CODE, a.listener);
      client.subscribe(CODE, () => {
        throw new Error("listener bug");
      });
      client.subscribe(CODE, b.listener);
      const source = onlySource();
      source.emit(job({ seq: 1 }));
      source.emit(completed(2));
      expect(a.seqs()).toEqual([1, 2]);
      expect(b.seqs()).toEqual([1, 2]);
      await flush();
    });
    expect(thrown.map((error) => (error as Error).message)).toEqual(["listener bug", "listener bug"]);
  });

  it("does not let a stale unsubscribe touch a newer subscription of the same code", () => {
    const client = fakeClient();
    const stale = client.subscribe(CODE, () => {});
    onlySource().emit(completed(1));

    const fresh = recorder();
    client.subscribe(CODE, fresh.listener);
    stale();

    const source = onlySource();
    source.emit(job({ seq: 1 }));
    expect(fresh.seqs()).toEqual([1]);
    expect(source.closed).toBe(false);
  });

  it("lets a listener subscribe again from its terminal callback, starting fresh", () => {
    const client = fakeClient();
    const again = recorder();
    client.subscribe(CODE, (event) => {
      if (event.type === "snapshot" && event.job.status === "COMPLETED") {
        client.subscribe(CODE, again.listener);
      }
    });
    onlySource().emit(completed(1));

    expect(FakeEventSource.instances).toHaveLength(2);
    onlySource().emit(completed(1));
    expect(again.seqs()).toEqual([1]);
  });
});

describe("subscribe: connection state and onError", () => {
  it("reports connecting, open, connecting on a drop, open again — to listeners that ask", async () => {
    const client = fakeClient();
    const states: string[] = [];
    const plain = recorder();
    client.subscribe(CODE, plain.listener);
    client.subscribe(CODE, () => {}, { onConnection: (state) => states.push(state) });
    await flush();
    const source = onlySource();
    source.open();
    source.drop();
    source.open();

    expect(states).toEqual(["connecting", "open", "connecting", "open"]);
    expect(plain.events).toEqual([]); // a reconnect is not an error event
  });

  it("gives a late joiner the current connection state on the next microtask", async () => {
    const client = fakeClient();
    client.subscribe(CODE, () => {});
    onlySource().open();
    const states: string[] = [];
    client.subscribe(CODE, () => {}, { onConnection: (state) => states.push(state) });
    expect(states).toEqual([]);
    await flush();
    expect(states).toEqual(["open"]);
  });

  it("calls onError with the ExportError after the listener's error event", () => {
    const client = fakeClient();
    const order: string[] = [];
    client.subscribe(
      CODE,
      (event) => order.push(`listener:${event.type}`),
      { onError: (error) => order.push(`onError:${error.code}`) },
    );
    onlySource().fail(500);
    expect(order).toEqual(["listener:error", "onError:STREAM_CLOSED"]);
  });

  it("does not call onError for a terminal job (that is a snapshot, not a stream error)", () => {
    const client = fakeClient();
    const errors: unknown[] = [];
    client.subscribe(CODE, () => {}, { onError: (error) => errors.push(error) });
    onlySource().emit(job({ seq: 1, status: "FAILED", error: { code: "GENERATION_FAILED", message: "x" } }));
    expect(errors).toEqual([]);
  });
});

describe("subscribe: defensive parsing", () => {
  it("ignores events whose seq is not newer than the last one seen", () => {
    const { source, recorders: [a] } = subscribed([CODE]);

    source.emit(job({ seq: 1 }));
    source.emit(job({ seq: 3 }));
    source.emit(job({ seq: 3 }));
    source.emit(job({ seq: 2 }));
    source.emit(job({ seq: 4 }));

    expect(a.seqs()).toEqual([1, 3, 4]);
  });

  it("ignores malformed events and events of another code", () => {
    const { source, recorders: [a] } = subscribed([CODE]);

    source.emitRaw("not json");
    source.emitRaw(JSON.stringify({ code: CODE, status: "SLEEPING", seq: 1, progress: 0 }));
    source.emit(job({ code: OTHER_CODE, seq: 1 }));
    source.emit(job({ seq: 2 }));

    expect(a.seqs()).toEqual([2]);
  });
});

describe("waitFor", () => {
  it("resolves with the COMPLETED job and releases the stream", async () => {
    const client = fakeClient();
    const done = client.waitFor(CODE);
    const source = onlySource();
    source.emit(job({ seq: 1 }));
    source.emit(completed(2));

    await expect(done).resolves.toEqual(completed(2));
    expect(source.closed).toBe(true);
  });

  it("rejects with an ExportError carrying the job's error when the job FAILED", async () => {
    const client = fakeClient();
    const done = client.waitFor(CODE);
    const failed = job({ seq: 2, status: "FAILED", error: { code: "GENERATION_FAILED", message: "failed at 50%" } });
    onlySource().emit(failed);

    const error = await done.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "GENERATION_FAILED", jobStatus: "FAILED", job: failed, message: "failed at 50%" });
  });

  it("rejects with status CANCELLED when the job was cancelled", async () => {
    const client = fakeClient();
    const done = client.waitFor(CODE);
    onlySource().emit(job({ seq: 2, status: "CANCELLED" }));

    await expect(done).rejects.toMatchObject({ name: "ExportError", code: "CANCELLED", jobStatus: "CANCELLED" });
  });

  it("rejects on the BFF's ERROR event", async () => {
    const client = fakeClient();
    const done = client.waitFor(CODE);
    onlySource().emit({ code: CODE, status: "ERROR", error: { code: "NOT_FOUND", message: "job vanished" } });

    await expect(done).rejects.toMatchObject({ name: "ExportError", code: "NOT_FOUND", jobStatus: "ERROR" });
  });

  it("rejects on a fatal stream error", async () => {
    const client = fakeClient();
    const done = client.waitFor(CODE);
    onlySource().fail(502);

    await expect(done).rejects.toMatchObject({ name: "ExportError", code: "STREAM_CLOSED" });
  });

  it("rejects with ABORTED when its signal aborts, and releases its listener", async () => {
    const client = fakeClient();
    const controller = new AbortController();
    const done = client.waitFor(CODE, { signal: controller.signal });
    const source = onlySource();

    controller.abort(new Error("user left"));

    const error = await done.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "ABORTED", httpStatus: undefined });
    expect((error as ExportError).cause).toEqual(new Error("user left"));
    expect(source.closed).toBe(true);
  });

  it("rejects at once, without opening a stream, when the signal is already aborted", async () => {
    const client = fakeClient();
    await expect(client.waitFor(CODE, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "ABORTED" });
    expect(FakeEventSource.instances).toHaveLength(0);
  });

  it("shares the stream with subscribe and leaves it open for the other listeners", async () => {
    const client = fakeClient();
    const a = recorder();
    client.subscribe(CODE, a.listener);
    const controller = new AbortController();
    const done = client.waitFor(CODE, { signal: controller.signal });
    expect(FakeEventSource.instances).toHaveLength(1);

    controller.abort();
    await done.catch(() => {});
    const source = onlySource();
    source.emit(job({ seq: 1 }));
    expect(a.seqs()).toEqual([1]);
  });
});
