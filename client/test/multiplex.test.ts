/**
 * The `multiplex` mode: one EventSource on /api/events for the whole client, its events
 * dispatched by code through the same subscription Map as per-job mode.
 */
import { describe, expect, it } from "vitest";
import { registryOf } from "../src/client.js";
import { ExportError } from "../src/index.js";
import type { ExportClient, FetchLike } from "../src/index.js";
import { CODE, FakeEventSource, OTHER_CODE, catchingUncaught, completed, fakeClient, flush, job, onlySource, recorder, routedFetch, subscribed } from "./fakes.js";

const EVENTS_URL = "http://bff.test/api/events";

/** A multiplex client; by default its seed GET never answers, so only the stream speaks. */
function newClient(fetch?: FetchLike): ExportClient {
  return fakeClient({ mode: "multiplex", fetch });
}

describe("multiplex: one EventSource for the whole client", () => {
  it("opens one EventSource on /api/events for subscribes to many codes", () => {
    const { client } = subscribed([CODE, OTHER_CODE, CODE], { mode: "multiplex" });

    expect(FakeEventSource.instances.map((source) => source.url)).toEqual([EVENTS_URL]);
    expect(client.stats().subscribed).toEqual([CODE, OTHER_CODE]);
    expect(client.stats().connections).toBe(1);
  });

  it("dispatches each event to the listeners of its code only", () => {
    const { source, recorders: [a, b] } = subscribed([CODE, OTHER_CODE], { mode: "multiplex" });

    source.emit(job({ seq: 1 }));
    source.emit(job({ code: OTHER_CODE, seq: 7 }));
    source.emit(job({ seq: 2 }));

    expect(a.seqs()).toEqual([1, 2]);
    expect(b.seqs()).toEqual([7]);
  });

  it("ends one code's subscription on its terminal event and keeps the stream for the others", () => {
    const client = newClient();
    const a = recorder();
    client.subscribe(CODE, a.listener);
    client.subscribe(OTHER_CODE, () => {});
    const source = onlySource();

    source.emit(completed(3));

    expect(a.events.at(-1)).toEqual({ type: "snapshot", job: completed(3), etaMs: 0 });
    expect(client.stats().subscribed).toEqual([OTHER_CODE]);
    expect(source.closed).toBe(false);
  });

  it("closes the EventSource one microtask after the Map became empty", async () => {
    const client = newClient();
    const unsubscribe = client.subscribe(CODE, () => {});
    client.subscribe(OTHER_CODE, () => {});
    const source = onlySource();
    source.emit(completed(2, OTHER_CODE));
    unsubscribe();
    expect(source.closed).toBe(false);

    await flush();
    expect(source.closed).toBe(true);
    expect(client.stats().connections).toBe(0);
  });

  it("keeps the one EventSource through a StrictMode-like subscribe, unsubscribe, subscribe in one tick", async () => {
    const client = newClient();
    client.subscribe(CODE, () => {})();
    const a = recorder();
    client.subscribe(CODE, a.listener);
    await flush();

    expect(FakeEventSource.instances).toHaveLength(1);
    onlySource().emit(job({ seq: 1 }));
    expect(a.seqs()).toEqual([1]);
  });

  it("keeps the EventSource when one code leaves and another arrives in the same tick", async () => {
    const client = newClient();
    client.subscribe(CODE, () => {})();
    client.subscribe(OTHER_CODE, () => {});
    await flush();
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(onlySource().closed).toBe(false);
  });
});

describe("multiplex: snapshots of jobs nobody subscribed to yet", () => {
  it("gives a later subscriber the snapshot the stream already sent, on the next microtask, without a request", async () => {
    const { fetch, requests } = routedFetch({});
    const client = newClient(fetch);
    client.subscribe(CODE, () => {});
    const source = onlySource();
    source.emit(job({ code: OTHER_CODE, seq: 5, progress: 50 }));

    const late = recorder();
    client.subscribe(OTHER_CODE, late.listener);
    expect(late.events).toEqual([]);
    await flush();

    expect(late.seqs()).toEqual([5]);
    expect(requests.filter((r) => r.url.includes(OTHER_CODE))).toEqual([]);
    source.emit(job({ code: OTHER_CODE, seq: 6 }));
    expect(late.seqs()).toEqual([5, 6]);
  });

  it("ends a subscribe to a job known as finished at once, without opening a stream", async () => {
    const { fetch } = routedFetch({ "GET http://bff.test/api/exports": [200, { exports: [completed(9)] }] });
    const client = newClient(fetch);
    await client.list();

    const a = recorder();
    client.subscribe(CODE, a.listener);
    await flush();

    expect(a.events).toEqual([{ type: "snapshot", job: completed(9), etaMs: 0 }]);
    expect(FakeEventSource.instances).toHaveLength(0);
    expect(client.stats().subscribed).toEqual([]);
  });

  it("seeds a code nothing is known of with one GET /api/exports/{code}", async () => {
    const { fetch, requests } = routedFetch({ [`GET http://bff.test/api/exports/${CODE}`]: [200, job({ seq: 3 })] });
    const client = newClient(fetch);
    const a = recorder();
    client.subscribe(CODE, a.listener);
    client.subscribe(CODE, () => {});
    await flush();

    expect(requests.map((r) => `${r.init.method} ${r.url}`)).toEqual([`GET http://bff.test/api/exports/${CODE}`]);
    expect(a.seqs()).toEqual([3]);
    // The stream's copy of the same snapshot (it sends every job on connect) is not news.
    onlySource().emit(job({ seq: 3 }));
    onlySource().emit(job({ seq: 4 }));
    expect(a.seqs()).toEqual([3, 4]);
  });

  it("uses the snapshot start() returned, checking once per client with a GET that the session owns it", async () => {
    const created = job({ seq: 1, status: "PENDING" });
    const { fetch, requests } = routedFetch({
      "POST http://bff.test/api/exports": [202, created],
      [`GET http://bff.test/api/exports/${CODE}`]: [200, created],
    });
    const client = newClient(fetch);
    const { code } = await client.start({ rows: 10, durationMs: 10 });
    const a = recorder();
    client.subscribe(code, a.listener);
    await flush();
    expect(a.seqs()).toEqual([1]);
    expect(requests.map(({ url, init }) => `${init.method} ${url}`)).toEqual(["POST http://bff.test/api/exports", `GET http://bff.test/api/exports/${CODE}`]);

    // Confirmed: a later start and subscribe send no GET.
    await client.start({ rows: 10, durationMs: 10 });
    client.subscribe(code, recorder().listener);
    await flush();
    expect(requests).toHaveLength(3);
  });

  it("fails a started job fast with NOT_FOUND when the session its requests carry does not own it (a cookie left behind)", async () => {
    // Node's bare fetch keeps no cookie: the POST's session is lost, the GET finds nothing,
    // and the shared stream (a new, empty session) would never speak of the code.
    const created = job({ seq: 1, status: "PENDING" });
    const client = newClient(routedFetch({ "POST http://bff.test/api/exports": [202, created] }).fetch);
    const { code } = await client.start({ rows: 10, durationMs: 10 });
    const a = recorder();
    client.subscribe(code, a.listener);
    await flush();
    const event = a.events.at(-1);
    expect(event?.type === "error" && event.error).toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
    expect(event?.type === "error" && event.error.message).toContain("createNodeSession");
    expect(client.stats().subscribed).toEqual([]);
  });

  it("fails a subscribe to an unknown (or another session's) code with NOT_FOUND and deletes the entry", async () => {
    const client = newClient(routedFetch({}).fetch);
    const a = recorder();
    client.subscribe(CODE, a.listener);
    client.subscribe(OTHER_CODE, () => {});
    await flush();

    expect(a.events).toHaveLength(1);
    const event = a.events[0]!;
    expect(event.type === "error" && event.error).toBeInstanceOf(ExportError);
    expect(event.type === "error" && event.error).toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
    expect(client.stats().subscribed).toEqual([]);
  });

  it("ignores snapshots not newer than the last one seen for that code (a reconnect replays them)", () => {
    const { client, source, recorders: [a] } = subscribed([CODE], { mode: "multiplex" });
    source.emit(job({ seq: 1 }));
    source.emit(job({ seq: 2 }));
    source.drop();
    source.emit(job({ seq: 1 }));
    source.emit(job({ seq: 2 }));
    source.emit(job({ seq: 3 }));

    expect(a.seqs()).toEqual([1, 2, 3]);
    expect(registryOf(client).known.get(CODE)?.seq).toBe(3);
  });

  it("ends only the code of an ERROR event and forgets its snapshot", () => {
    const { client, source, recorders: [a, b] } = subscribed([CODE, OTHER_CODE], { mode: "multiplex" });
    source.emit(job({ seq: 1 }));

    source.emit({ code: CODE, status: "ERROR", error: { code: "UPSTREAM_UNAVAILABLE", message: "backend gone" } });

    expect(a.events.at(-1)).toMatchObject({ type: "error", error: { code: "UPSTREAM_UNAVAILABLE", jobStatus: "ERROR" } });
    expect(client.stats().subscribed).toEqual([OTHER_CODE]);
    expect(registryOf(client).known.get(CODE)).toBeUndefined();
    source.emit(job({ code: OTHER_CODE, seq: 1 }));
    expect(b.seqs()).toEqual([1]);
  });

  it("fails every subscription when the shared stream closes for good (e.g. 429 TOO_MANY_STREAMS)", () => {
    const client = newClient();
    const a = recorder();
    const b = recorder();
    client.subscribe(CODE, a.listener);
    client.subscribe(OTHER_CODE, b.listener);

    onlySource().fail(429);

    for (const { events } of [a, b]) {
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ type: "error", error: { code: "STREAM_CLOSED", jobStatus: "ERROR" } });
    }
    expect(client.stats().subscribed).toEqual([]);
    expect(client.stats().connections).toBe(0);
    client.subscribe(CODE, () => {});
    expect(FakeEventSource.instances).toHaveLength(2);
  });

  it("shares the connection state of the one stream with every subscription", async () => {
    const client = newClient();
    const states: string[][] = [[], []];
    client.subscribe(CODE, () => {}, { onConnection: (state) => states[0]!.push(state) });
    client.subscribe(OTHER_CODE, () => {}, { onConnection: (state) => states[1]!.push(state) });
    await flush();
    const source = onlySource();
    source.open();
    source.drop();

    expect(states).toEqual([
      ["connecting", "open", "connecting"],
      ["connecting", "open", "connecting"],
    ]);
  });

  it("delivers to the other listeners when one throws", async () => {
    const thrown = await catchingUncaught(async () => {
      const client = newClient();
      const a = recorder();
      client.subscribe(CODE, () => {
        throw new Error("boom");
      });
      client.subscribe(CODE, a.listener);
      onlySource().emit(job({ seq: 1 }));
      expect(a.seqs()).toEqual([1]);
    });
    expect(thrown).toHaveLength(1);
  });

  it("waitFor resolves from a snapshot the stream sent before anyone waited", async () => {
    const client = newClient();
    client.subscribe(OTHER_CODE, () => {});
    onlySource().emit(completed(4));
    await expect(client.waitFor(CODE)).resolves.toEqual(completed(4));
  });
});

describe("observe: every job the client learns about", () => {
  it("reports newer snapshots from start, list, streams and cancel, and removals", async () => {
    const { fetch } = routedFetch({
      "GET http://bff.test/api/exports": [200, { exports: [job({ seq: 2 }), completed(5, OTHER_CODE)] }],
      [`DELETE http://bff.test/api/exports/${OTHER_CODE}`]: [204],
      [`DELETE http://bff.test/api/exports/${CODE}`]: [200, job({ seq: 4, status: "CANCELLED" })],
    });
    const client = newClient(fetch);
    const seen: string[] = [];
    registryOf(client).known.observe((observation) =>
      seen.push(observation.type === "snapshot" ? `${observation.job.code.slice(0, 4)}@${observation.job.seq}` : `removed ${observation.code.slice(0, 4)}`),
    );

    await client.list();
    client.subscribe(CODE, () => {});
    onlySource().emit(job({ seq: 2 })); // not newer
    onlySource().emit(job({ seq: 3 }));
    await expect(client.cancel(OTHER_CODE)).resolves.toBeUndefined();
    await expect(client.cancel(CODE)).resolves.toMatchObject({ status: "CANCELLED" });

    expect(seen).toEqual(["0d9c@5", "6f1c@2", "6f1c@3", "removed 0d9c", "6f1c@4"]);
  });
});
