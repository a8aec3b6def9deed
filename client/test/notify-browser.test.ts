/**
 * notifyWhenHidden in real Chromium, on the demo page (which calls it for its clients) served by the real BFF in front of the real backend: the permission
 * granted through the browser context, an export that completes while the tab is
 * visible shows nothing, one that completes while it is hidden shows exactly one
 * notification with the file name. Also the demo's "about N s left" (etaMs).
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, missingForBrowser, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = prerequisites("notification browser test (Chromium + real backend + BFF)", missingForBrowser());

interface Shown {
  readonly title: string;
  readonly body: string | undefined;
  readonly tag: string | undefined;
}

/**
 * Runs in the page before its scripts: records every `new Notification(…)` (then shows
 * it as the browser would) in `window.__shown`.
 */
function recordNotifications(): void {
  const shown: Shown[] = [];
  (window as unknown as { __shown: Shown[] }).__shown = shown;
  const Original = window.Notification;
  class Recording extends Original {
    constructor(title: string, options?: NotificationOptions) {
      shown.push({ title, body: options?.body, tag: options?.tag });
      super(title, options);
    }
  }
  Object.defineProperty(Recording, "permission", { get: () => Original.permission });
  window.Notification = Recording;
}

/**
 * Hides the tab as far as the page can tell. Headless Chromium keeps every page
 * "visible" (another page in front, a minimized window: no change), so the document's
 * visibilityState is overridden and visibilitychange dispatched, as a browser does when
 * the user switches tabs.
 */
async function hide(page: Page): Promise<void> {
  await page.evaluate(() => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    document.dispatchEvent(new Event("visibilitychange"));
  });
}

describe.skipIf(missing !== undefined)("notifyWhenHidden: a system notification when an export completes in a hidden tab", () => {
  let servers: Servers;
  let browser: Browser;

  beforeAll(async () => {
    servers = await startServers();
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await servers?.stop();
  });

  async function startExport(page: Page, rows: number, durationMs: number): Promise<string> {
    const items = page.getByTestId("export-item");
    const before = await items.count();
    await page.getByTestId("rows-input").fill(String(rows));
    await page.getByTestId("duration-input").fill(String(durationMs));
    await page.getByTestId("start-button").click();
    await expect.poll(() => items.count()).toBe(before + 1);
    return (await items.first().getAttribute("data-code")) ?? "";
  }

  const shown = (page: Page): Promise<Shown[]> => page.evaluate(() => (window as unknown as { __shown: Shown[] }).__shown);

  it.each(["multiplex", "per-job"] as const)("%s: none while visible, exactly one with the file name while hidden", async (mode) => {
    const context = await browser.newContext({ acceptDownloads: true });
    await context.grantPermissions(["notifications"], { origin: servers.bffUrl });
    await context.addInitScript(recordNotifications);
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(`${servers.bffUrl}/?mode=${mode}`);
    expect(await page.evaluate(() => Notification.permission)).toBe("granted");
    // Granted already: the demo offers no button to ask.
    expect(await page.getByTestId("notify-button").isHidden()).toBe(true);

    // Visible: the export completes, the page shows it, no notification. On the way the
    // demo shows the client's estimate of the time left.
    const seen = await startExport(page, 20_000, 3000);
    const seenItem = page.locator(`[data-testid="export-item"][data-code="${seen}"]`);
    await expect.poll(() => seenItem.getByTestId("rows-text").textContent(), { timeout: 20_000, interval: 50 }).toMatch(/about \d+ s left$/);
    await expect.poll(() => seenItem.getAttribute("data-status"), { timeout: 20_000 }).toBe("COMPLETED");
    expect(await seenItem.getByTestId("rows-text").textContent()).not.toContain("left");

    // Hidden while it runs: one notification when it completes.
    const code = await startExport(page, 20_000, 3000);
    const item = page.locator(`[data-testid="export-item"][data-code="${code}"]`);
    await expect.poll(() => item.getAttribute("data-status"), { timeout: 20_000 }).toBe("IN_PROGRESS");
    await hide(page);
    const download = page.waitForEvent("download", { timeout: 30_000 });
    await expect.poll(() => item.getAttribute("data-status"), { timeout: 20_000 }).toBe("COMPLETED");
    await download; // the page is done with the export
    const fileName = await item.getAttribute("data-filename");
    expect(fileName).toMatch(/\.csv$/);
    expect(await shown(page)).toEqual([{ title: "Export ready", body: fileName, tag: code }]);
    expect(pageErrors).toEqual([]);
    await context.close();
  });
});
