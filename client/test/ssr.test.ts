// @vitest-environment node
/**
 * Server-side rendering: the hooks render in Node without DOM globals and open nothing —
 * no request, no stream — until the browser hydrates.
 */
import { createElement } from "react";
import type { ReactNode } from "react";
import { renderToString } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { createExportClient } from "../src/index.js";
import type { EventSourceConstructorLike, FetchLike } from "../src/index.js";
import { ExportClientProvider, useExport, useExports } from "../src/react.js";
import { CODE, completed, routedFetch } from "./fakes.js";

const h = createElement;

function Page(): ReactNode {
  const { exports, loading } = useExports();
  const { status, progress, etaMs } = useExport(CODE);
  return h("main", null, loading ? "loading" : `${exports.length} exports`, ` ${status ?? "unknown"} ${progress}% ${etaMs ?? "-"}`);
}

describe("SSR", () => {
  it("renderToString of useExport and useExports in Node: no DOM, no request, no stream", async () => {
    expect(typeof window).toBe("undefined");
    expect(typeof document).toBe("undefined");
    const requests: string[] = [];
    const fetch: FetchLike = (url) => {
      requests.push(url);
      return Promise.reject(new Error("SSR must not fetch"));
    };
    const streams: string[] = [];
    class NoStream {
      constructor(url: string) {
        streams.push(url);
        throw new Error("SSR must not open a stream");
      }
    }
    for (const mode of ["per-job", "multiplex"] as const) {
      const client = createExportClient({ mode, fetch, EventSource: NoStream as unknown as EventSourceConstructorLike });
      const html = renderToString(h(ExportClientProvider, { client }, h(Page)));
      expect(html).toBe("<main>loading<!-- --> unknown 0% -</main>");
    }
    await new Promise((resolve) => setTimeout(resolve, 0)); // anything queued would run now
    expect(requests).toEqual([]);
    expect(streams).toEqual([]);
  });

  it("renders a snapshot the client already knows (e.g. fetched by the server's loader)", async () => {
    const { fetch, requests } = routedFetch({ [`GET /api/exports/${CODE}`]: [200, completed(3)] });
    const client = createExportClient({ fetch });
    await client.get(CODE);
    const html = renderToString(h(ExportClientProvider, { client }, h(Page)));
    expect(html).toBe("<main>loading<!-- --> COMPLETED 100% 0</main>");
    expect(requests).toHaveLength(1); // the loader's GET only
  });
});
