// @vitest-environment jsdom
/**
 * The React hooks in jsdom with react-dom: live state, one stream per code however many
 * components (also under StrictMode's double mount), the session list.
 */
import { act, cleanup, render, screen } from "@testing-library/react";
import { StrictMode, createElement } from "react";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createExportClient } from "../src/index.js";
import type { ExportClient } from "../src/index.js";
import { ExportClientProvider, useExport, useExports } from "../src/react.js";
import { CODE, FakeBrowser, FakeEventSource, OTHER_CODE, completed, fakeClient, flush, job, routedFetch } from "./fakes.js";

const h = createElement;

function Row({ code, label }: { code: string; label: string }): ReactNode {
  const { status, progress, error, connection } = useExport(code);
  return h(
    "p",
    { "data-testid": label },
    `${status ?? "unknown"} ${progress}%${error ? ` ${error.code}` : ""} ${connection ?? "-"}`,
  );
}

function mount(client: ExportClient, children: ReactNode, strict = false) {
  const tree = h(ExportClientProvider, { client }, children);
  return render(strict ? h(StrictMode, null, tree) : tree);
}

afterEach(() => {
  cleanup();
});

describe("useExport", () => {
  it("shows the transport: polling after the fallback, SSE again when a retry delivers", async () => {
    const { fetch } = routedFetch({ [`GET http://bff.test/api/exports/${CODE}`]: [200, job({ seq: 4, progress: 40 })] });
    const client = createExportClient({
      baseUrl: "http://bff.test",
      EventSource: FakeEventSource,
      fetch,
      // A bound long enough that the retry is still open when the test emits on it.
      fallback: { firstMessageMs: 400, retrySseMs: 50 },
    });
    function Transport(): ReactNode {
      const { progress, transport } = useExport(CODE);
      return h("p", { "data-testid": "transport" }, `${progress}% ${transport ?? "-"}`);
    }
    mount(client, h(Transport));
    const shown = (): string | null => screen.getByTestId("transport").textContent;
    await act(flush);
    expect(shown()).toBe("0% sse");

    await act(() => vi.waitFor(() => expect(shown()).toBe("40% polling"), { timeout: 2_000 }));
    await act(() => vi.waitFor(() => expect(FakeEventSource.open()).toHaveLength(1), { timeout: 2_000 }));
    act(() => FakeEventSource.open()[0]!.emit(job({ seq: 5, progress: 50 })));
    expect(shown()).toBe("50% sse");
  });

  it("renders the export live: status, progress, connection, up to COMPLETED", async () => {
    const client = fakeClient();
    mount(client, h(Row, { code: CODE, label: "row" }));
    expect(screen.getByTestId("row").textContent).toBe("unknown 0% -");
    await act(flush);
    expect(screen.getByTestId("row").textContent).toBe("unknown 0% connecting");

    const source = FakeEventSource.open()[0]!;
    act(() => source.emit(job({ seq: 1, progress: 30 })));
    expect(screen.getByTestId("row").textContent).toBe("IN_PROGRESS 30% open");
    act(() => source.emit(completed(2)));
    expect(screen.getByTestId("row").textContent).toBe("COMPLETED 100% open");
    expect(source.closed).toBe(true);
  });

  it("opens one stream for two components watching one code, under StrictMode's double mount", async () => {
    const client = fakeClient();
    const view = mount(client, [h(Row, { key: "a", code: CODE, label: "a" }), h(Row, { key: "b", code: CODE, label: "b" })], true);
    await act(flush);

    expect(FakeEventSource.instances).toHaveLength(1);
    act(() => FakeEventSource.instances[0]!.emit(job({ seq: 1, progress: 55 })));
    expect(screen.getByTestId("a").textContent).toBe("IN_PROGRESS 55% open");
    expect(screen.getByTestId("b").textContent).toBe("IN_PROGRESS 55% open");

    view.unmount();
    await flush();
    expect(FakeEventSource.instances[0]!.closed).toBe(true);
    expect(client.stats().subscribed).toEqual([]);
  });

  it("shows the job's error for FAILED and the stream's for ERROR", async () => {
    const client = fakeClient();
    mount(client, [h(Row, { key: "a", code: CODE, label: "a" }), h(Row, { key: "b", code: OTHER_CODE, label: "b" })]);
    await act(flush);
    const [first, second] = FakeEventSource.instances;
    act(() => first!.emit(job({ seq: 2, status: "FAILED", progress: 40, error: { code: "GENERATION_FAILED", message: "x" } })));
    act(() => second!.fail(502));

    expect(screen.getByTestId("a").textContent).toBe("FAILED 40% GENERATION_FAILED open");
    expect(screen.getByTestId("b").textContent).toBe("ERROR 0% STREAM_CLOSED connecting");
  });

  it("starts from the snapshot the client already knows, and opens no stream for a finished job", async () => {
    const { fetch } = routedFetch({ [`GET http://bff.test/api/exports/${CODE}`]: [200, completed(3)] });
    const client = fakeClient({ fetch });
    await client.get(CODE);
    mount(client, h(Row, { code: CODE, label: "row" }));
    await act(flush);
    expect(screen.getByTestId("row").textContent).toBe("COMPLETED 100% -");
    expect(FakeEventSource.instances).toHaveLength(0);
  });

  it("downloads a completed export once with downloadWhenCompleted: StrictMode's double effect, two components, a reload", async () => {
    // One browser: Web Locks (a double) and jsdom's localStorage, kept across the "reload".
    vi.stubGlobal("navigator", { ...navigator, locks: new FakeBrowser().locks(1) });
    const clicks = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(() => {});
    try {
      function Downloading({ label }: { label: string }): ReactNode {
        const { status } = useExport(CODE, { downloadWhenCompleted: true });
        return h("p", { "data-testid": label }, status ?? "unknown");
      }
      const { fetch } = routedFetch({ [`GET http://bff.test/api/exports/${CODE}`]: [200, completed(3)] });
      const page = async (): Promise<void> => {
        const client = fakeClient({ fetch });
        await client.get(CODE);
        mount(client, [h(Downloading, { key: "a", label: "a" }), h(Downloading, { key: "b", label: "b" })], true);
        await act(flush);
        await vi.waitFor(() => expect(screen.getByTestId("a").textContent).toBe("COMPLETED"));
      };
      await page();
      await vi.waitFor(() => expect(clicks).toHaveBeenCalledTimes(1));
      cleanup();
      await page(); // a reload: a new client, the same browser
      await act(flush);
      expect(clicks).toHaveBeenCalledTimes(1);
    } finally {
      clicks.mockRestore();
      vi.unstubAllGlobals();
      localStorage.clear();
    }
  });

  it("explains that it needs a provider", () => {
    const quiet = console.error;
    console.error = () => {};
    try {
      expect(() => render(h(Row, { code: CODE, label: "row" }))).toThrow(/ExportClientProvider/);
    } finally {
      console.error = quiet;
    }
  });
});

function List(): ReactNode {
  const { exports, loading, error } = useExports();
  if (loading) return h("p", { "data-testid": "list" }, "loading");
  if (error) return h("p", { "data-testid": "list" }, error.code);
  return h("p", { "data-testid": "list" }, exports.map((each) => `${each.code.slice(0, 4)}:${each.status}:${each.progress}`).join(" "));
}

describe("useExports", () => {
  const older = job({ code: OTHER_CODE, seq: 3, progress: 10, createdAt: "2026-11-25T08:00:00Z" });
  const newer = job({ seq: 1, status: "PENDING", createdAt: "2026-11-25T09:00:00Z" });

  it("lists the session once (also under StrictMode), newest first, and keeps unfinished exports live on one multiplexed stream", async () => {
    const { fetch, requests } = routedFetch({ "GET http://bff.test/api/exports": [200, { exports: [newer, older] }] });
    const client = fakeClient({ mode: "multiplex", fetch });
    mount(client, h(List), true);
    expect(screen.getByTestId("list").textContent).toBe("loading");
    await act(flush);

    expect(screen.getByTestId("list").textContent).toBe("6f1c:PENDING:0 0d9c:IN_PROGRESS:10");
    expect(requests.map((r) => r.url)).toEqual(["http://bff.test/api/exports"]);
    expect(FakeEventSource.instances.map((s) => s.url)).toEqual(["http://bff.test/api/events"]);

    act(() => FakeEventSource.instances[0]!.emit(job({ code: OTHER_CODE, seq: 4, progress: 70, createdAt: older.createdAt })));
    expect(screen.getByTestId("list").textContent).toBe("6f1c:PENDING:0 0d9c:IN_PROGRESS:70");
  });

  it("adds an export started through the same client and drops one deleted through it", async () => {
    const started = job({ code: "a1b2c3d4-0000-4000-8000-000000000000", seq: 1, status: "PENDING", createdAt: "2026-11-25T10:00:00Z" });
    const { fetch } = routedFetch({
      "GET http://bff.test/api/exports": [200, { exports: [completed(5, OTHER_CODE)] }],
      "POST http://bff.test/api/exports": [202, started],
      [`DELETE http://bff.test/api/exports/${OTHER_CODE}`]: [204],
    });
    const client = fakeClient({ fetch });
    mount(client, h(List));
    await act(flush);
    expect(screen.getByTestId("list").textContent).toBe("0d9c:COMPLETED:100");
    expect(FakeEventSource.instances).toHaveLength(0); // nothing unfinished to follow

    await act(() => client.start({ rows: 1, durationMs: 1 }));
    expect(screen.getByTestId("list").textContent).toBe("a1b2:PENDING:0 0d9c:COMPLETED:100");
    expect(FakeEventSource.instances.map((s) => s.url)).toEqual([`http://bff.test/api/exports/${started.code}/events`]);

    await act(() => client.cancel(OTHER_CODE));
    expect(screen.getByTestId("list").textContent).toBe("a1b2:PENDING:0");
  });

  it("shows the list request's error", async () => {
    const { fetch } = routedFetch({ "GET http://bff.test/api/exports": [502, { error: { code: "BACKEND_UNAVAILABLE", message: "down" } }] });
    mount(fakeClient({ fetch }), h(List));
    await act(flush);
    expect(screen.getByTestId("list").textContent).toBe("BACKEND_UNAVAILABLE");
  });
});
