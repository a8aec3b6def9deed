/**
 * Cross-tab sharing in real Chromium against the real BFF and backend: the pages of one
 * browser context (one origin, one session cookie) share one `GET /api/events`, counted
 * by the BFF's own `exportstream_bff_session_streams_opened_total`; another context gets
 * its own; when the page holding the stream closes mid-export another takes over, every
 * page still sees COMPLETED exactly once, and `downloadOnce` downloads the file once.
 *
 * The pages are a small test page at the BFF's origin (served by a route, so the BFF's
 * cookie and Origin check apply) running the client bundled from src/, plus the demo.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import type { Browser, BrowserContext, Download, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientDir, launchChromium, missingForBrowser, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = prerequisites("cross-tab browser tests (Chromium + real backend + BFF)", missingForBrowser());

/** What the test page records: every listener call, in order, and downloadOnce's answers. */
interface Seen {
  readonly seq: number;
  readonly status: string;
  readonly progress: number;
  readonly error?: string;
}

interface PageApi {
  start(rows: number, durationMs: number): Promise<string>;
  follow(code: string): void;
  stats(): { tabs: number; leader: boolean; connections: number };
  readonly seen: Seen[];
  readonly downloads: (boolean | string)[];
}

const TEST_PAGE = `<!doctype html>
<meta charset="utf-8"><title>crosstab</title>
<p>status <output id="status"></output> progress <output id="progress"></output></p>
<script type="module">
import { createExportClient } from "/__crosstab/client.js";
const client = createExportClient({ mode: "multiplex", crossTab: !location.search.includes("crossTab=false") });
const seen = [];
const downloads = [];
window.crosstab = {
  seen,
  downloads,
  stats: () => client.stats(),
  start: async (rows, durationMs) => (await client.start({ rows, durationMs })).code,
  follow(code) {
    client.subscribe(code, (event) => {
      if (event.type === "error") return void seen.push({ seq: -1, status: "ERROR", progress: 0, error: event.error.code });
      const { seq, status, progress } = event.job;
      seen.push({ seq, status, progress });
      document.getElementById("status").textContent = status;
      document.getElementById("progress").textContent = String(progress);
      if (status === "COMPLETED") client.downloadOnce(event.job).then((done) => downloads.push(done), (error) => downloads.push(String(error)));
    });
  },
};
</script>`;

describe.skipIf(missing !== undefined)("cross-tab sharing in Chromium", () => {
  let servers: Servers;
  /** Uncaught errors of every page: none expected. */
  const pageErrors: string[] = [];
  let browser: Browser;
  let bundle: string;

  beforeAll(async () => {
    const [started, launched, built] = await Promise.all([
      startServers({ env: { WORKERS: "8" } }),
      launchChromium(),
      build({ entryPoints: [join(clientDir, "src", "index.ts")], bundle: true, format: "esm", target: "es2022", write: false, logLevel: "warning" }),
    ]);
    servers = started;
    browser = launched;
    bundle = built.outputFiles[0]?.text ?? "";
  });

  afterAll(async () => {
    expect(pageErrors).toEqual([]);
    await browser?.close();
    await servers?.stop();
  });

  /** The BFF's count of `/api/events` streams it accepted. */
  async function streamsOpened(): Promise<number> {
    const text = await (await fetch(`${servers.bffUrl}/metrics`)).text();
    const found = /^exportstream_bff_session_streams_opened_total (\S+)$/m.exec(text);
    if (!found) throw new Error(`no exportstream_bff_session_streams_opened_total in the BFF's metrics:\n${text}`);
    return Number(found[1]);
  }

  /** A browser context (a session of its own) whose test page is at the BFF's origin; counts its /api/events requests. */
  async function newBrowserContext(): Promise<{ context: BrowserContext; eventsRequests: () => number; downloads: Download[] }> {
    const context = await browser.newContext({ acceptDownloads: true });
    await context.route(`${servers.bffUrl}/__crosstab/**`, (route) => {
      const path = new URL(route.request().url()).pathname;
      return path.endsWith(".js")
        ? route.fulfill({ contentType: "text/javascript", body: bundle })
        : route.fulfill({ contentType: "text/html", body: TEST_PAGE });
    });
    let events = 0;
    context.on("request", (request) => {
      if (new URL(request.url()).pathname === "/api/events") events++;
    });
    const downloads: Download[] = [];
    context.on("page", (page) => {
      page.on("download", (download) => downloads.push(download));
      page.on("pageerror", (error) => pageErrors.push(error.message));
    });
    return { context, eventsRequests: () => events, downloads };
  }

  async function openPages(context: BrowserContext, count: number, query = ""): Promise<Page[]> {
    const pages: Page[] = [];
    for (let i = 0; i < count; i++) {
      const page = await context.newPage();
      await page.goto(`${servers.bffUrl}/__crosstab/index.html${query}`);
      await expect.poll(() => page.evaluate(() => "crosstab" in window), { timeout: 10_000 }).toBe(true);
      pages.push(page);
    }
    return pages;
  }

  /** The test page's `window.crosstab`, through one expression evaluated in the page. */
  const inPage = <K extends keyof PageApi>(page: Page, member: K, ...args: unknown[]): Promise<Awaited<PageApi[K] extends (...a: never[]) => infer R ? R : PageApi[K]>> =>
    page.evaluate(
      `(() => { const member = window.crosstab[${JSON.stringify(member)}]; return typeof member === "function" ? member(...${JSON.stringify(args)}) : member; })()`,
    ) as never;
  const seen = (page: Page): Promise<Seen[]> => inPage(page, "seen");
  const stats = (page: Page): Promise<{ tabs: number; leader: boolean; connections: number }> => inPage(page, "stats");
  const downloadAnswers = (page: Page): Promise<(boolean | string)[]> => inPage(page, "downloads");

  async function follow(pages: readonly Page[], code: string): Promise<void> {
    await Promise.all(pages.map((page) => inPage(page, "follow", code)));
  }

  /** Every page saw COMPLETED, once, after strictly increasing snapshots and no error. */
  async function expectCompletedOnce(pages: readonly Page[]): Promise<Seen[][]> {
    for (const page of pages) {
      await expect.poll(async () => (await seen(page)).some((each) => each.status === "COMPLETED"), { timeout: 30_000 }).toBe(true);
    }
    const all = await Promise.all(pages.map(seen));
    for (const events of all) {
      expect(events.filter((each) => each.status === "COMPLETED")).toHaveLength(1);
      expect(events.filter((each) => each.status === "ERROR")).toEqual([]);
      const seqs = events.map((each) => each.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(events.at(-1)?.status).toBe("COMPLETED");
    }
    for (const page of pages) {
      expect(await page.locator("#status").textContent()).toBe("COMPLETED");
      expect(await page.locator("#progress").textContent()).toBe("100");
    }
    return all;
  }

  it("5 pages of one browser share one /api/events and show the same progress; another browser gets its own stream", async () => {
    const before = await streamsOpened();
    const first = await newBrowserContext();
    const pages = await openPages(first.context, 5);
    const code = await inPage(pages[0]!, "start", 200_000, 6_000);
    await follow(pages, code);
    await expect.poll(() => Promise.all(pages.map(async (page) => (await stats(page)).tabs)), { timeout: 10_000 }).toEqual([5, 5, 5, 5, 5]);
    const holders = (await Promise.all(pages.map(stats))).filter((each) => each.leader && each.connections === 1);
    expect(holders).toHaveLength(1);

    const all = await expectCompletedOnce(pages);
    // The same snapshots in the same order on every page, from the moment all had joined.
    const from = Math.max(...all.map((events) => events[0]?.seq ?? 0));
    const shared = all.map((events) => events.filter((each) => each.seq >= from));
    for (const events of shared) expect(events).toEqual(shared[0]);
    expect(shared[0]!.filter((each) => each.status === "IN_PROGRESS").length).toBeGreaterThanOrEqual(2);
    expect((await streamsOpened()) - before).toBe(1); // the BFF's own count
    expect(first.eventsRequests()).toBe(1);

    // Another browser context: another session, so a stream of its own.
    const second = await newBrowserContext();
    const [other] = await openPages(second.context, 1);
    const otherCode = await inPage(other!, "start", 1_000, 1_000);
    await follow([other!], otherCode);
    await expectCompletedOnce([other!]);
    expect(second.eventsRequests()).toBe(1);
    expect((await streamsOpened()) - before).toBe(2);
    expect(first.eventsRequests()).toBe(1);
    await Promise.all([first.context.close(), second.context.close()]);
  });

  it("the page holding the stream closes mid-export: another takes over, each page sees COMPLETED once, one download", async () => {
    const before = await streamsOpened();
    const { context, eventsRequests, downloads } = await newBrowserContext();
    const pages = await openPages(context, 4);
    const code = await inPage(pages[0]!, "start", 200_000, 8_000);
    await follow(pages, code);
    await expect.poll(() => Promise.all(pages.map(async (page) => (await stats(page)).tabs)), { timeout: 10_000 }).toEqual([4, 4, 4, 4]);
    for (const page of pages) {
      await expect.poll(async () => (await seen(page)).some((each) => each.status === "IN_PROGRESS" && each.progress > 0), { timeout: 10_000 }).toBe(true);
    }
    const leaders = (await Promise.all(pages.map(stats))).map((each) => each.leader);
    expect(leaders.filter(Boolean)).toHaveLength(1);
    const leader = pages[leaders.indexOf(true)]!;
    expect((await seen(leader)).some((each) => each.status === "COMPLETED")).toBe(false); // mid-export
    await leader.close();
    const rest = pages.filter((page) => page !== leader);

    await expect.poll(async () => (await Promise.all(rest.map(stats))).filter((each) => each.leader).length, { timeout: 10_000 }).toBe(1);
    await expect.poll(() => Promise.all(rest.map(async (page) => (await stats(page)).tabs)), { timeout: 10_000 }).toEqual([3, 3, 3]);
    await expectCompletedOnce(rest);
    expect(eventsRequests()).toBe(2);
    expect((await streamsOpened()) - before).toBe(2);

    // Each page asked downloadOnce; one of them downloaded.
    await expect.poll(async () => (await Promise.all(rest.map(downloadAnswers))).flat(), { timeout: 10_000 })
      .toHaveLength(3);
    const answers = (await Promise.all(rest.map(downloadAnswers))).flat();
    expect(answers.filter((each) => each === true)).toHaveLength(1);
    expect(answers.filter((each) => each === false)).toHaveLength(2);
    await expect.poll(() => downloads.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    const file = readFileSync((await downloads[0]!.path()) ?? "");
    const job = (await (await fetchWithCookies(context, `/api/exports/${code}`)).json()) as { file: { sha256: string } };
    expect(createHash("sha256").update(file).digest("hex")).toBe(job.file.sha256);
    expect(downloads).toHaveLength(1);
    await context.close();
  });

  it("crossTab: false: each page holds a stream of its own", async () => {
    const before = await streamsOpened();
    const { context, eventsRequests } = await newBrowserContext();
    const pages = await openPages(context, 2, "?crossTab=false");
    const code = await inPage(pages[0]!, "start", 5_000, 1_500);
    await follow(pages, code);
    await expectCompletedOnce(pages);
    expect((await streamsOpened()) - before).toBe(2);
    expect(eventsRequests()).toBe(2);
    expect(await Promise.all(pages.map(async (page) => (await stats(page)).tabs))).toEqual([1, 1]);
    await context.close();
  });

  it("the demo page says how many tabs share its stream, and downloads an export once across them", async () => {
    const context = await browser.newContext({ acceptDownloads: true });
    let eventsRequests = 0;
    context.on("request", (request) => {
      if (new URL(request.url()).pathname === "/api/events") eventsRequests++;
    });
    const downloads: Download[] = [];
    context.on("page", (page) => page.on("download", (download) => downloads.push(download)));
    const first = await context.newPage();
    await first.goto(`${servers.bffUrl}/?mode=multiplex`);
    await first.getByTestId("rows-input").fill("100000");
    await first.getByTestId("duration-input").fill("5000");
    await first.getByTestId("start-button").click();
    await expect.poll(() => first.getByTestId("export-item").count()).toBe(1);
    const second = await context.newPage();
    await second.goto(`${servers.bffUrl}/?mode=multiplex`); // lists the session's exports and follows the running one
    await expect.poll(() => second.getByTestId("export-item").count()).toBe(1);

    const notes = (): Promise<(string | null)[]> => Promise.all([first, second].map((page) => page.getByTestId("stat-tabs").textContent()));
    // Each page repaints its counters every 250 ms.
    await expect.poll(async () => (await notes()).sort(), { timeout: 10_000 }).toEqual([
      "shared by 2 tabs · held by another tab",
      "shared by 2 tabs · held by this tab",
    ]);
    for (const page of [first, second]) {
      await expect.poll(() => page.getByTestId("export-item").getAttribute("data-status"), { timeout: 30_000 }).toBe("COMPLETED");
    }
    await expect.poll(() => downloads.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    await downloads[0]!.path(); // finished: a second one would have started by now
    expect(downloads).toHaveLength(1);
    expect(eventsRequests).toBe(1);
    await context.close();
  });
});

/** A request with the context's session cookie, from Node. */
async function fetchWithCookies(context: BrowserContext, path: string): Promise<Response> {
  const origin = context.pages()[0] ? new URL(context.pages()[0]!.url()).origin : "";
  const cookies = await context.cookies(origin);
  return fetch(`${origin}${path}`, { headers: { Cookie: cookies.map((each) => `${each.name}=${each.value}`).join("; ") } });
}
