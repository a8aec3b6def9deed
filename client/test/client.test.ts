import { afterEach, describe, expect, it } from "vitest";
import { registryOf } from "../src/client.js";
import { createExportClient, ExportError } from "../src/index.js";
import type { FetchLike } from "../src/index.js";
import { CODE, completed, fakeClient, FakeEventSource, fakeFetch, flush, job, onlySource, OTHER_CODE, recorder, routedFetch, subscribed } from "./fakes.js";

describe("start and get", () => {
  it("POSTs the request as JSON to {baseUrl}/api/exports and returns the job", async () => {
    const created = job({ seq: 1, status: "PENDING" });
    const { fetch, requests } = fakeFetch(202, created);
    const client = createExportClient({ baseUrl: "http://bff.test/", fetch });

    const result = await client.start({ rows: 2000, durationMs: 1500, failAt: 50 });

    expect(result).toEqual(created);
    expect(requests).toHaveLength(1);
    const [request] = requests;
    expect(request?.url).toBe("http://bff.test/api/exports");
    expect(request?.init.method).toBe("POST");
    expect(request?.init.headers["Content-Type"]).toBe("application/json");
    expect(JSON.parse(request?.init.body ?? "")).toEqual({ rows: 2000, durationMs: 1500, failAt: 50 });
  });

  it("GETs one export by code on the same origin by default", async () => {
    const { fetch, requests } = fakeFetch(200, job({ seq: 3 }));
    const client = createExportClient({ fetch });

    await expect(client.get(CODE)).resolves.toMatchObject({ code: CODE, seq: 3 });
    expect(requests[0]?.url).toBe(`/api/exports/${CODE}`);
  });

  it("escapes the code in the URL", async () => {
    const { fetch, requests } = fakeFetch(200, job({ seq: 3 }));
    await createExportClient({ fetch }).get("../admin?x=1");
    expect(requests[0]?.url).toBe("/api/exports/..%2Fadmin%3Fx%3D1");
  });
});

describe("ExportError from HTTP", () => {
  it.each([
    [404, "NOT_FOUND", "export not found"],
    [400, "INVALID_CODE", "code is not a UUID"],
    [409, "NOT_READY", "not ready"],
    [422, "VALIDATION_FAILED", "rows must be between 1 and 1000000"],
  ])("carries HTTP %i and the server's code %s from the error body", async (status, code, message) => {
    const { fetch } = fakeFetch(status, { error: { code, message } });
    const client = createExportClient({ fetch });

    const error = await client.get(CODE).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ name: "ExportError", code, message, status });
  });

  it("reports BAD_RESPONSE with the HTTP status when the error body is not the documented JSON", async () => {
    const { fetch } = fakeFetch(502, "<html>Bad Gateway</html>");
    await expect(createExportClient({ fetch }).get(CODE)).rejects.toMatchObject({ code: "BAD_RESPONSE", httpStatus: 502 });
  });

  it("reports BAD_RESPONSE when a 2xx body is not a job", async () => {
    const { fetch } = fakeFetch(200, { hello: "world" });
    await expect(createExportClient({ fetch }).get(CODE)).rejects.toMatchObject({ code: "BAD_RESPONSE" });
  });

  it("reports NETWORK_ERROR with status 0 when fetch itself fails", async () => {
    const fetch: FetchLike = () => Promise.reject(new TypeError("fetch failed"));
    const error = await createExportClient({ fetch }).get(CODE).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "NETWORK_ERROR", httpStatus: undefined });
    expect((error as ExportError).cause).toBeInstanceOf(TypeError);
  });

  it("reports ABORTED when the request's signal aborts", async () => {
    const fetch: FetchLike = (_url, init) =>
      new Promise((_resolve, reject) => {
        init.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      });
    const controller = new AbortController();
    const started = createExportClient({ fetch }).start({ rows: 1, durationMs: 1 }, { signal: controller.signal });
    controller.abort();
    await expect(started).rejects.toMatchObject({ code: "ABORTED", httpStatus: undefined });
  });
});

describe("files", () => {
  const globals = globalThis as { document?: unknown };
  afterEach(() => {
    delete globals.document;
  });

  /** A document whose <a> clicks are recorded. */
  function fakeDocument(): { clicked: { href: string; download: string }[]; appended: unknown[]; removed(): number } {
    const clicked: { href: string; download: string }[] = [];
    const appended: unknown[] = [];
    let removed = 0;
    globals.document = {
      createElement: () => {
        const anchor = {
          href: "",
          download: "",
          rel: "",
          style: { display: "" },
          click: () => clicked.push({ href: anchor.href, download: anchor.download }),
          remove: () => (removed += 1),
        };
        return anchor;
      },
      body: { append: (node: unknown) => appended.push(node) },
    };
    return { clicked, appended, removed: () => removed };
  }

  it("downloads in the same tab through a temporary <a download> click", () => {
    const document = fakeDocument();

    createExportClient({ baseUrl: "http://bff.test" }).download(completed(5));

    expect(document.clicked).toEqual([{ href: `http://bff.test/api/exports/${CODE}/file`, download: "export.csv" }]);
    expect(document.appended).toHaveLength(1);
    expect(document.removed()).toBe(1);
  });

  it("resolves a job's file URL against baseUrl (same origin by default)", () => {
    const document = fakeDocument();
    createExportClient().download(completed(5));
    expect(document.clicked.map((click) => click.href)).toEqual([`/api/exports/${CODE}/file`]);
  });

  it("refuses the file of a job that is not COMPLETED", () => {
    const document = fakeDocument();
    expect(() => createExportClient().download(job({ seq: 1 }))).toThrow(ExportError);
    expect(() => createExportClient().download(job({ seq: 1 }))).toThrow(expect.objectContaining({ code: "NOT_READY" }));
    expect(document.clicked).toEqual([]);
  });

  it("explains that download() needs a browser", () => {
    expect(() => createExportClient().download(completed(5))).toThrow(/browser document/);
  });
});

describe("defaults", () => {
  it("explains how to inject an EventSource when the platform has none", () => {
    const client = createExportClient();
    expect(() => client.subscribe(CODE, () => {})).toThrow(/eventsource/);
    expect(client.stats()).toEqual({ mode: "per-job", subscribed: [], connections: 0, tabs: 1, leader: false });
  });
});

describe("list and cancel", () => {
  it("lists this session's exports with GET /api/exports, newest first as the server sent them", async () => {
    const jobs = [job({ seq: 2, code: "b" }), completed(5)];
    const { fetch, requests } = fakeFetch(200, { exports: jobs });
    await expect(createExportClient({ baseUrl: "http://bff.test", fetch }).list()).resolves.toEqual(jobs);
    expect(requests.map((r) => `${r.init.method} ${r.url}`)).toEqual(["GET http://bff.test/api/exports"]);
  });

  it("reports BAD_RESPONSE when the list is not a list of jobs", async () => {
    const { fetch } = fakeFetch(200, { exports: [{ code: "x" }] });
    await expect(createExportClient({ fetch }).list()).rejects.toMatchObject({ code: "BAD_RESPONSE" });
  });

  it("cancels a running export with DELETE and resolves with its CANCELLED snapshot", async () => {
    const cancelled = job({ seq: 4, status: "CANCELLED" });
    const { fetch, requests } = fakeFetch(200, cancelled);
    const client = createExportClient({ fetch });
    await expect(client.cancel(CODE)).resolves.toEqual(cancelled);
    expect(requests[0]?.init.method).toBe("DELETE");
    expect(requests[0]?.url).toBe(`/api/exports/${CODE}`);
    expect(registryOf(client).known.get(CODE)).toEqual(cancelled);
  });

  it("resolves undefined when DELETE answers 204 (a finished export was deleted)", async () => {
    const { fetch } = fakeFetch(204, "");
    await expect(createExportClient({ fetch }).cancel(CODE)).resolves.toBeUndefined();
  });

  it("carries the BFF's FORBIDDEN_ORIGIN (403) refusal", async () => {
    const { fetch } = fakeFetch(403, { error: { code: "FORBIDDEN_ORIGIN", message: "cross-origin request refused" } });
    await expect(createExportClient({ fetch }).cancel(CODE)).rejects.toMatchObject({ code: "FORBIDDEN_ORIGIN", httpStatus: 403 });
  });

  it("refuses an unknown mode", () => {
    expect(() => createExportClient({ mode: "polling" as never })).toThrow(/unknown mode/);
  });
});

describe("session", () => {
  it("sends concurrent first starts one after the other, so the BFF's session cookie of the first is used by the rest", async () => {
    const pending: (() => void)[] = [];
    const sent: string[] = [];
    const fetch: FetchLike = (_url, init) => {
      sent.push(init.body ?? "");
      return new Promise((resolve) => {
        pending.push(() =>
          resolve({ ok: true, status: 202, statusText: "", text: () => Promise.resolve(JSON.stringify(job({ seq: 1, status: "PENDING" }))) }),
        );
      });
    };
    const client = createExportClient({ fetch });
    const starts = [1, 2, 3].map((rows) => client.start({ rows, durationMs: 0 }));
    await new Promise((r) => setTimeout(r, 0));
    expect(sent).toHaveLength(1); // the others wait for the session

    pending[0]!();
    await new Promise((r) => setTimeout(r, 0));
    expect(sent).toHaveLength(3); // then go at once
    for (const resolve of pending.slice(1)) resolve();
    await Promise.all(starts);

    void client.start({ rows: 4, durationMs: 0 });
    expect(sent).toHaveLength(4); // session known: no waiting any more
  });
});

describe("an expired session", () => {
  const expired = [401, { error: { code: "SESSION_EXPIRED", message: "your session has expired" } }] as const;

  it("rejects a request the BFF answers 401 SESSION_EXPIRED with that ExportError", async () => {
    const { fetch } = fakeFetch(...expired);
    const client = createExportClient({ baseUrl: "http://bff.test", fetch });

    await expect(client.list()).rejects.toMatchObject({ name: "ExportError", code: "SESSION_EXPIRED", httpStatus: 401 });
  });

  it.each([
    ["per-job", `GET http://bff.test/api/exports/${CODE}`],
    ["multiplex", "GET http://bff.test/api/exports"],
  ] as const)(
    "ends a %s stream the browser closed for good (no status) with SESSION_EXPIRED when a GET of it says so",
    async (mode, probe) => {
      // In multiplex mode a subscription first GETs the job (a seed): it is answered.
      const seed = [200, job({ seq: 1 })] as const;
      const { fetch, requests } = routedFetch({ [`GET http://bff.test/api/exports/${CODE}`]: seed, [probe]: expired });
      const { recorders: [a], source } = subscribed([CODE], { mode, fetch });
      await flush();
      a.events.length = 0;

      source.fail(); // a browser's EventSource: CLOSED, the 401 unseen
      await flush();

      expect(requests.map((r) => `${r.init.method} ${r.url}`)).toContain(probe);
      expect(a.events).toHaveLength(1);
      expect(a.events[0]).toMatchObject({ type: "error", error: { name: "ExportError", code: "SESSION_EXPIRED", httpStatus: 401 } });
    },
  );

  it("ends a stream the eventsource package saw refused 401 with SESSION_EXPIRED too", async () => {
    const { fetch } = routedFetch({ [`GET http://bff.test/api/exports/${CODE}`]: expired });
    const { recorders: [a], source } = subscribed([CODE], { fetch });

    source.fail(401);
    await flush();

    expect(a.events[0]).toMatchObject({ type: "error", error: { code: "SESSION_EXPIRED" } });
  });

  it("keeps STREAM_CLOSED when the GET answers anything else, and asks nothing for a known other status", async () => {
    const { fetch, requests } = routedFetch({
      [`GET http://bff.test/api/exports/${CODE}`]: [200, job({ seq: 1 })],
      [`GET http://bff.test/api/exports/${OTHER_CODE}`]: [200, job({ seq: 1, code: OTHER_CODE })],
      "GET http://bff.test/api/exports": [200, { exports: [] }],
    });
    const { recorders: [a, b], source } = subscribed([CODE, OTHER_CODE], { mode: "multiplex", fetch });
    await flush();
    a.events.length = 0;
    b.events.length = 0;
    source.fail();
    await flush();
    for (const { events } of [a, b]) {
      expect(events[0]).toMatchObject({ type: "error", error: { code: "STREAM_CLOSED" } });
    }

    const seen = requests.length;
    const perJob = subscribed([CODE], { fetch });
    perJob.source.fail(502);
    expect(perJob.recorders[0].events[0]).toMatchObject({ type: "error", error: { code: "STREAM_CLOSED" } });
    expect(requests).toHaveLength(seen);
  });

  it("tells nothing to a listener that left while the BFF was asked, nor to the one that came back", async () => {
    let answer = (): void => {};
    const fetch: FetchLike = () =>
      new Promise((resolve) => {
        const text = () => Promise.resolve(JSON.stringify(expired[1]));
        answer = () => resolve({ ok: false, status: 401, statusText: "", text });
      });
    const client = fakeClient({ fetch });
    const left = recorder();
    const unsubscribe = client.subscribe(CODE, left.listener);
    onlySource().fail();
    unsubscribe();
    await flush(); // the closed stream is let go
    const back = recorder();
    client.subscribe(CODE, back.listener);

    answer(); // the first stream's question is answered only now
    await flush();
    onlySource().emit(job({ seq: 2 }));

    expect(left.events).toEqual([]);
    expect(back.events.map((event) => event.type)).toEqual(["snapshot"]);
  });

  it("renewSession() POSTs {baseUrl}/api/session with the client's credentials", async () => {
    const { fetch, requests } = routedFetch({ "POST http://bff.test/api/session": [204] });
    const client = createExportClient({ baseUrl: "http://bff.test", fetch, credentials: "include" });

    await expect(client.renewSession()).resolves.toBeUndefined();

    expect(requests).toHaveLength(1);
    expect(requests[0]?.init).toMatchObject({ method: "POST", credentials: "include" });
  });
});

describe("ExportError's statuses", () => {
  it("keeps the HTTP status and the job status apart; the deprecated status gives either, or 0", () => {
    const http = new ExportError("NOT_FOUND", "x", { httpStatus: 404 });
    expect(http).toMatchObject({ httpStatus: 404, jobStatus: undefined, status: 404 });
    const failed = ExportError.fromJob(job({ seq: 2, status: "FAILED", error: { code: "GENERATION_FAILED", message: "m" } }));
    expect(failed).toMatchObject({ code: "GENERATION_FAILED", httpStatus: undefined, jobStatus: "FAILED", status: "FAILED" });
    expect(new ExportError("NETWORK_ERROR", "x")).toMatchObject({ httpStatus: undefined, jobStatus: undefined, status: 0 });
    // The options of before the split still mean the same.
    expect(new ExportError("BAD_RESPONSE", "x", { status: 502 })).toMatchObject({ httpStatus: 502, jobStatus: undefined });
    expect(new ExportError("STREAM_CLOSED", "x", { status: "ERROR" })).toMatchObject({ httpStatus: undefined, jobStatus: "ERROR" });
    expect(new ExportError("ABORTED", "x", { status: 0 })).toMatchObject({ httpStatus: undefined, jobStatus: undefined });
  });
});

describe("the fault option (demos and tests)", () => {
  it.each([
    ["per-job", `http://bff.test/api/exports/${CODE}/events?fault=relay-gives-up&faultAfterMs=500&giveUpMs=2000`],
    ["multiplex", "http://bff.test/api/events?fault=relay-gives-up&faultAfterMs=500&giveUpMs=2000"],
  ] as const)("asks the BFF for the relay fault on the %s stream it opens", async (mode, url) => {
    const { fetch } = routedFetch({ [`GET http://bff.test/api/exports/${CODE}`]: [200, job({ seq: 1 })] });
    const client = createExportClient({
      baseUrl: "http://bff.test",
      EventSource: FakeEventSource,
      mode,
      fetch,
      fault: { kind: "relay-gives-up", faultAfterMs: 500, giveUpMs: 2000 },
    });
    client.subscribe(CODE, recorder().listener);
    await flush();

    expect(onlySource().url).toBe(url);
  });

  it("leaves the stream URLs alone without it, and leaves out the timings not given", async () => {
    fakeClient().subscribe(CODE, recorder().listener);
    expect(onlySource().url).toBe(`http://bff.test/api/exports/${CODE}/events`);
    onlySource().close();

    const client = createExportClient({ baseUrl: "http://bff.test", EventSource: FakeEventSource, fetch: fakeFetch(200, job({ seq: 1 })).fetch, fault: { kind: "relay-gives-up" } });
    client.subscribe(OTHER_CODE, recorder().listener);
    expect(onlySource().url).toBe(`http://bff.test/api/exports/${OTHER_CODE}/events?fault=relay-gives-up`);
  });
});
