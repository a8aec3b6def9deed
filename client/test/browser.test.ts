/**
 * The demo page in real Chromium, served by the real BFF in front of the real backend:
 * the progress bar moves live, the file downloads in the same tab with the right bytes,
 * and no EventSource reconnects after its export ended.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { Browser, Locator, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientDir, inCI, missingPrerequisites, reportMissing, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const chromiumPath = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
// The README's picture is refreshed with UPDATE_SCREENSHOT=1 (make screenshot); other
// runs write next to the test results so a test run leaves the work tree clean.
const screenshotPath =
  process.env["UPDATE_SCREENSHOT"] === "1"
    ? join(clientDir, "..", "docs", "demo.png")
    : join(clientDir, "test-results", "demo.png");
const missing = reportMissing(
  "browser tests (Chromium + real backend + BFF)",
  missingPrerequisites([chromiumPath]).map((item) =>
    item === chromiumPath ? `Chromium at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH)` : item,
  ),
);

if (missing !== undefined) {
  describe("browser prerequisites", () => {
    if (inCI) it("are present (CI=true makes a missing one a failure)", () => expect.fail(missing));
    else it.skip(`are missing, so the suite is skipped: ${missing}`, () => {});
  });
}

describe.skipIf(missing !== undefined)("demo page in Chromium", () => {
  let servers: Servers;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  /** When the first export was seen COMPLETED (ms since epoch). */
  let completedAt = 0;
  /** Requests the page made to each export's events URL, by code. */
  const eventStreams = new Map<string, number>();

  beforeAll(async () => {
    servers = await startServers();
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    const context = await browser.newContext({
      acceptDownloads: true,
      viewport: { width: 1100, height: 720 },
      deviceScaleFactor: 2,
    });
    page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("request", (request) => {
      const match = /\/api\/exports\/([^/]+)\/events$/.exec(new URL(request.url()).pathname);
      if (match?.[1]) eventStreams.set(match[1], (eventStreams.get(match[1]) ?? 0) + 1);
    });
  });

  afterAll(async () => {
    await browser?.close();
    await servers?.stop();
  });

  /** The `retry:` delay a stream announces (the stream of a finished export ends at once). */
  async function retryDelay(url: string): Promise<number> {
    const cookie = (await page.context().cookies(url)).map((c) => `${c.name}=${c.value}`).join("; ");
    const response = await fetch(url, { headers: cookie ? { Cookie: cookie } : {}, signal: AbortSignal.timeout(10_000) });
    const retry = /^retry: *(\d+)$/m.exec(await response.text())?.[1];
    expect(retry, `retry: line of ${url}`).toBeDefined();
    return Number(retry);
  }

  async function startExport(rows: number, durationMs: number, failAt?: number): Promise<Locator> {
    const items = page.getByTestId("export-item");
    const before = await items.count();
    await page.getByTestId("rows-input").fill(String(rows));
    await page.getByTestId("duration-input").fill(String(durationMs));
    await page.getByTestId("fail-at-input").fill(failAt === undefined ? "" : String(failAt));
    await page.getByTestId("start-button").click();
    await expect.poll(() => items.count()).toBe(before + 1);
    return items.first(); // newest first
  }

  it("shows live progress, then downloads the completed file in the same tab", async () => {
    await page.goto(`${servers.bffUrl}/`);
    await expect.poll(() => page.title()).toContain("exportstream");
    const download = page.waitForEvent("download", { timeout: 30_000 });

    const item = await startExport(5000, 3000);
    const code = await item.getAttribute("data-code");
    expect(code).toMatch(/^[0-9a-f-]{36}$/);
    const bar = `[data-code="${code}"] [data-testid="progress"]`;

    // The bar moves while the export runs: it reaches some value, then a higher one.
    const first = await page.waitForFunction(
      (selector) => {
        const value = document.querySelector<HTMLProgressElement>(selector)?.value ?? 0;
        return value > 0 && value < 100 ? value : undefined;
      },
      bar,
      { polling: "raf", timeout: 20_000 },
    );
    const firstValue = (await first.jsonValue()) as number;
    await page.waitForFunction(
      ([selector, floor]) => (document.querySelector<HTMLProgressElement>(selector)?.value ?? 0) > floor,
      [bar, firstValue] as const,
      { polling: "raf", timeout: 20_000 },
    );

    await page.waitForSelector(`[data-code="${code}"][data-status="COMPLETED"]`, { timeout: 20_000 });
    completedAt = Date.now();
    await expect.poll(() => item.getByTestId("percent").textContent()).toBe("100%");
    expect(await item.getByTestId("status-badge").textContent()).toBe("COMPLETED");
    expect(await item.getByTestId("download-link").textContent()).toBe("Download again");

    const file = await download;
    expect(file.suggestedFilename()).toMatch(/\.csv$/);
    expect(file.url()).toBe(`${servers.bffUrl}/api/exports/${code}/file`);
    const bytes = readFileSync(await file.path());
    const sha256 = await item.getAttribute("data-sha256");
    expect(sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(sha256);
    expect(page.url()).toBe(`${servers.bffUrl}/`); // same tab, no navigation away
    expect(page.context().pages()).toHaveLength(1); // no new window
  });

  it("shows a failed export next to running ones, and never reopens a finished export's stream", async () => {
    const failing = await startExport(5000, 2000, 40);
    await expect.poll(() => failing.getAttribute("data-status"), { timeout: 20_000 }).toBe("FAILED");
    expect(await failing.getByTestId("error-message").textContent()).not.toBe("");

    const running = await startExport(200_000, 60_000);
    await page.waitForFunction(
      (code) => {
        const value = document.querySelector<HTMLProgressElement>(`[data-code="${code}"] [data-testid="progress"]`)?.value ?? 0;
        return value >= 3;
      },
      await running.getAttribute("data-code"),
      { polling: "raf", timeout: 20_000 },
    );

    await page.getByTestId("rows-input").fill("5000");
    await page.getByTestId("duration-input").fill("3000");
    await page.getByTestId("fail-at-input").fill("");
    mkdirSync(join(clientDir, "..", "docs"), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });

    // The server ends the response after the terminal event; a page that kept its
    // EventSource open would reconnect after the stream's `retry:` delay. Proving that
    // no reconnect happens needs that delay to have passed since the first export ended.
    const firstCode = await page.getByTestId("export-item").last().getAttribute("data-code");
    const quietUntil = completedAt + (await retryDelay(`${servers.bffUrl}/api/exports/${firstCode}/events`)) + 1_000;
    if (Date.now() < quietUntil) await new Promise((resolve) => setTimeout(resolve, quietUntil - Date.now()));

    const finished = await page.locator('[data-status="COMPLETED"], [data-status="FAILED"]').evaluateAll((nodes) =>
      nodes.map((node) => (node as HTMLElement).dataset["code"] ?? ""),
    );
    expect(finished.length).toBeGreaterThanOrEqual(2);
    for (const code of finished) expect(eventStreams.get(code), `event streams opened for ${code}`).toBe(1);
    expect(pageErrors).toEqual([]);
  });
});
