/**
 * The README's Vite dev-server recipe against the real BFF: Vite's `server.proxy['/api']`
 * passes the event stream through unbuffered, and `changeOrigin` decides whether the
 * BFF's Origin check lets POST/DELETE through. Requests carry the Origin header a
 * browser on the dev server's page sends (Node's fetch sends none by itself).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer } from "vite";
import type { ViteDevServer } from "vite";
import { createExportClient, ExportError } from "../src/index.js";
import type { FetchLike } from "../src/index.js";
import { cookieFetch, countingEventSource } from "./fakes.js";
import type { NodeFetch } from "./fakes.js";
import { externalBffUrl, freePort, inCI, missingPrerequisites, reportMissing, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = reportMissing(
  "Vite proxy test (real backend + BFF started here)",
  externalBffUrl ? ["a BFF of its own (started with ALLOWED_ORIGINS): unset EXPORTSTREAM_BFF_URL"] : missingPrerequisites(),
);

if (missing !== undefined) {
  describe("Vite proxy prerequisites", () => {
    if (inCI && !externalBffUrl) it("are present (CI=true makes a missing one a failure)", () => expect.fail(missing));
    else it.skip(`are missing, so the suite is skipped: ${missing}`, () => {});
  });
}

describe.skipIf(missing !== undefined)("Vite dev server proxying /api to the BFF", () => {
  let servers: Servers;
  const devServers: ViteDevServer[] = [];
  const roots: string[] = [];
  /** The dev server that ALLOWED_ORIGINS names. */
  let allowedPort: number;

  beforeAll(async () => {
    allowedPort = await freePort(); // the BFF must know the dev server's origin before it starts
    servers = await startServers({ env: { ALLOWED_ORIGINS: `http://127.0.0.1:${allowedPort}` } });
  });

  afterAll(async () => {
    await Promise.all(devServers.map((server) => server.close()));
    for (const root of roots) rmSync(root, { recursive: true, force: true });
    await servers?.stop();
  });

  /** The README's config: `server.proxy['/api']` to the BFF; returns the dev server's origin. */
  async function vite(changeOrigin: boolean, port = 0): Promise<string> {
    const root = mkdtempSync(join(tmpdir(), "exportstream-vite-"));
    roots.push(root);
    const server = await createServer({
      configFile: false,
      root,
      logLevel: "silent",
      server: {
        host: "127.0.0.1",
        port,
        strictPort: port !== 0,
        proxy: { "/api": { target: servers.bffUrl, changeOrigin } },
      },
    });
    devServers.push(server);
    await server.listen();
    const address = server.httpServer?.address();
    if (typeof address !== "object" || !address) throw new Error("vite is not listening");
    return `http://127.0.0.1:${address.port}`;
  }

  /** fetch as the dev server's page: its cookies, and its Origin on every request. */
  function pageFetch(origin: string): NodeFetch {
    const withCookies = cookieFetch();
    return (input, init) => withCookies(input, { ...init, headers: { ...(init?.headers as Record<string, string>), Origin: origin } });
  }

  function clientOn(origin: string) {
    const fetch = pageFetch(origin);
    return createExportClient({ baseUrl: origin, fetch: fetch as FetchLike, EventSource: countingEventSource(fetch).EventSource });
  }

  it("changeOrigin: false (the default) — POST passes the Origin check, and the stream arrives live, unbuffered", async () => {
    const origin = await vite(false);
    const client = clientOn(origin);
    const { code } = await client.start({ rows: 20_000, durationMs: 2_000 });
    const arrivals: { status: string; at: number }[] = [];
    for await (const job of client.events(code)) arrivals.push({ status: job.status, at: Date.now() });
    const completedAt = arrivals.at(-1)?.at ?? 0;
    expect(arrivals.at(-1)?.status).toBe("COMPLETED");
    // Progress came while the job ran, not in one lump at the end: the first snapshot of
    // progress arrived well before the completion.
    const firstProgress = arrivals.find((arrival) => arrival.status === "IN_PROGRESS");
    expect(firstProgress).toBeDefined();
    expect(completedAt - (firstProgress?.at ?? completedAt)).toBeGreaterThan(1_000);
    await expect(client.cancel(code)).resolves.toBeUndefined(); // DELETE passes too
  });

  it("changeOrigin: true — Host becomes the BFF's, Origin stays the dev server's: POST is refused FORBIDDEN_ORIGIN", async () => {
    const client = clientOn(await vite(true));
    const error = await client.start({ rows: 10, durationMs: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "FORBIDDEN_ORIGIN", status: 403 });
  });

  it("changeOrigin: true with the dev server's origin in the BFF's ALLOWED_ORIGINS — POST passes", async () => {
    const client = clientOn(await vite(true, allowedPort));
    const started = await client.start({ rows: 10, durationMs: 100 });
    await expect(client.waitFor(started.code)).resolves.toMatchObject({ status: "COMPLETED" });
  });
});
