/**
 * The demo's named scenarios in real Chromium, through the demo page served by the real
 * BFF in front of the real backend (both SCENARIOS=on), driven with the testing kit's
 * Playwright helpers: each shows the documented sequence of states (docs/api.md
 * "Scenarios" and "Relay faults"), as a person watching the page would see it.
 */
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SCENARIOS } from "../demo/scenarios.js";
import type { ScenarioName } from "../demo/scenarios.js";
import { expectDownload, startExport, waitForJob, waitForStatus } from "../src/testing/playwright.js";
import { launchChromium, missingForBrowser, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = prerequisites("scenario browser tests (Chromium + real backend + BFF)", missingForBrowser());

/** One change the page showed: a status, a progress value or a connection state, at page time `t`. */
interface Seen {
  readonly t: number;
  readonly kind: "submit" | "status" | "progress" | "connection";
  readonly value: string;
}

/**
 * Runs in the page before its scripts: records every status, progress and connection the
 * export items show, with the time, so a test reads the sequence afterwards.
 */
function recordTimeline(): void {
  const seen: { t: number; kind: string; value: string }[] = [];
  (window as unknown as { timeline: typeof seen }).timeline = seen;
  const record = (kind: string, value: string): void => void seen.push({ t: performance.now(), kind, value });
  const item = (element: HTMLElement): void => {
    record("status", element.dataset["status"] ?? "");
    record("connection", element.dataset["connection"] ?? "");
    record("progress", element.querySelector('[data-testid="progress"]')?.getAttribute("aria-valuenow") ?? "");
  };
  document.addEventListener("submit", () => record("submit", ""), true);
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      for (const added of mutation.addedNodes) if (added instanceof HTMLElement && added.dataset["testid"] === "export-item") item(added);
      const target = mutation.target;
      if (!(target instanceof HTMLElement) || mutation.type !== "attributes") continue;
      if (target.dataset["testid"] === "progress" && mutation.attributeName === "aria-valuenow") {
        record("progress", target.getAttribute("aria-valuenow") ?? "");
      } else if (target.dataset["testid"] === "export-item" && mutation.attributeName === "data-status") {
        record("status", target.dataset["status"] ?? "");
      } else if (target.dataset["testid"] === "export-item" && mutation.attributeName === "data-connection") {
        record("connection", target.dataset["connection"] ?? "");
      }
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-status", "data-connection", "aria-valuenow"] });
}

/** The statuses in the order shown, each once per run of equal ones. */
function statuses(timeline: readonly Seen[]): string[] {
  const shown = timeline.filter((each) => each.kind === "status").map((each) => each.value);
  return shown.filter((status, i) => status !== shown[i - 1]);
}

function firstTime(timeline: readonly Seen[], kind: Seen["kind"], value?: string): number {
  const found = timeline.find((each) => each.kind === kind && (value === undefined || each.value === value));
  if (!found) throw new Error(`the page never showed ${kind} ${value ?? ""}: ${JSON.stringify(timeline)}`);
  return found.t;
}

describe.skipIf(missing !== undefined)("the demo's scenarios in Chromium", () => {
  let servers: Servers;
  let browser: Browser;
  let context: BrowserContext | undefined;

  beforeAll(async () => {
    servers = await startServers({ env: { WORKERS: "8" } });
    browser = await launchChromium();
  });

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await servers?.stop();
  });

  async function openDemo(mode: "per-job" | "multiplex" = "multiplex"): Promise<Page> {
    context = await browser.newContext({ acceptDownloads: true });
    await context.addInitScript(recordTimeline);
    const page = await context.newPage();
    await page.goto(`${servers.bffUrl}/?mode=${mode}`);
    await expect.poll(() => page.getByTestId(`mode-${mode}`).isChecked()).toBe(true);
    return page;
  }

  /** Picks the scenario, fills the form and starts one export; `start` clicks Start. */
  async function prepare(page: Page, scenario: ScenarioName, rows: number, durationMs: number, autoDownload = false): Promise<() => Promise<void>> {
    await page.getByTestId("rows-input").fill(String(rows));
    await page.getByTestId("duration-input").fill(String(durationMs));
    await page.getByTestId("scenario-select").selectOption(scenario);
    await expect.poll(() => page.getByTestId("scenario-note").textContent()).toBe(SCENARIOS[scenario].note);
    await page.getByTestId("auto-download").setChecked(autoDownload);
    return () => page.getByTestId("start-button").click();
  }

  async function started(page: Page): Promise<{ item: Locator; code: string }> {
    const items = page.getByTestId("export-item");
    await expect.poll(() => items.count()).toBe(1);
    const code = (await items.first().getAttribute("data-code")) ?? "";
    expect(code).toMatch(/^[0-9a-f-]{36}$/);
    return { item: items.first(), code };
  }

  function timeline(page: Page): Promise<Seen[]> {
    return page.evaluate(() => (window as unknown as { timeline: Seen[] }).timeline);
  }

  function shownStatus(item: Locator, status: string, timeout = 20_000): Promise<void> {
    return expect.poll(() => item.getAttribute("data-status"), { timeout }).toBe(status);
  }

  it("normal: PENDING or straight to IN_PROGRESS, then COMPLETED; the file downloaded in the tab has the announced SHA-256", async () => {
    const page = await openDemo();
    const start = await prepare(page, "normal", 3000, 1500, true);
    const download = await expectDownload(page, start, { timeoutMs: 20_000 });

    const { item, code } = await started(page);
    await shownStatus(item, "COMPLETED");
    const job = await waitForStatus(page, code, "COMPLETED");
    expect(download.sha256).toBe(job.file?.sha256);
    expect(await item.getAttribute("data-sha256")).toBe(download.sha256);
    expect(download.filename).toBe(job.file?.name);
    expect(statuses(await timeline(page)).filter((status) => status !== "PENDING")).toEqual(["IN_PROGRESS", "COMPLETED"]);
    // The helper checks the bytes against the SHA-256 it is given.
    const link = item.getByTestId("download-link");
    await expect(expectDownload(page, () => link.click(), { sha256: "0".repeat(64) })).rejects.toThrow(`SHA-256 ${download.sha256}, expected`);
  });

  it("slow start: PENDING held at least startDelayMs after Start, then IN_PROGRESS and COMPLETED", async () => {
    const page = await openDemo();
    await (await prepare(page, "slow-start", 2000, 1000))();
    const { item } = await started(page);
    await shownStatus(item, "COMPLETED");

    const seen = await timeline(page);
    expect(statuses(seen)).toEqual(["PENDING", "IN_PROGRESS", "COMPLETED"]);
    const held = firstTime(seen, "status", "IN_PROGRESS") - firstTime(seen, "submit");
    expect(held).toBeGreaterThanOrEqual(SCENARIOS["slow-start"].fields.startDelayMs);
  });

  it("stall: progress stops at stallAt for about stallMs with the connection open, then goes on to COMPLETED", async () => {
    const page = await openDemo("per-job");
    await (await prepare(page, "stall", 3000, 2000))();
    const { item } = await started(page);
    await shownStatus(item, "COMPLETED");

    const seen = await timeline(page);
    const { stallAt, stallMs } = SCENARIOS.stall.fields;
    const progress = seen.filter((each) => each.kind === "progress" && each.value !== "");
    // The longest gap between two progress steps is the stall, where progress reaches
    // stallAt: the step the backend reports there may fall on either side of the gap (it
    // reports at most one step per progress interval), so the gap is from below or at
    // stallAt (within one reported step) to at or past it.
    const gaps = progress.map((each, i, all) => (i === 0 ? 0 : each.t - (all[i - 1]?.t ?? each.t)));
    const at = gaps.indexOf(Math.max(...gaps));
    const reached = progress[at - 1];
    const next = progress[at];
    expect(reached, JSON.stringify(progress)).toBeDefined();
    expect(next, JSON.stringify(progress)).toBeDefined();
    expect(Number(reached?.value)).toBeGreaterThan(0);
    expect(Number(reached?.value)).toBeLessThanOrEqual(stallAt + 5);
    expect(Number(next?.value)).toBeGreaterThanOrEqual(stallAt);
    // The page's times of two events the backend sent stallMs apart: a little jitter each.
    expect((next?.t ?? 0) - (reached?.t ?? 0)).toBeGreaterThanOrEqual(stallMs - 250);
    // No other progress step took that long: the gap is the stall's, at stallAt.
    const steps = progress.map((each, i, all) => each.t - (all[i - 1]?.t ?? each.t)).filter((_, i) => i !== at);
    expect(Math.max(...steps)).toBeLessThan(stallMs / 2);
    // The stream stayed open through the gap: no connection change shown in it.
    const changes = seen.filter((each) => each.kind === "connection" && each.t > (reached?.t ?? 0) && each.t < (next?.t ?? 0));
    expect(changes).toEqual([]);
    expect(seen.filter((each) => each.kind === "connection" && each.t <= (reached?.t ?? 0)).at(-1)?.value).toBe("open");
    expect(statuses(seen)).toContain("COMPLETED");
  });

  it("fails at 60 %: FAILED with the scenario's errorCode, never past 60 %, on the page and on the server", async () => {
    const page = await openDemo();
    await (await prepare(page, "fails-at-60", 3000, 1500))();
    const { item, code } = await started(page);
    await shownStatus(item, "FAILED");

    const { failAt, errorCode } = SCENARIOS["fails-at-60"].fields;
    await expect.poll(() => item.getByTestId("error-message").textContent()).toContain(`(${errorCode})`);
    const seen = await timeline(page);
    expect(statuses(seen).filter((status) => status !== "PENDING")).toEqual(["IN_PROGRESS", "FAILED"]);
    const shown = seen.filter((each) => each.kind === "progress" && each.value !== "").map((each) => Number(each.value));
    expect(Math.max(...shown)).toBeLessThanOrEqual(failAt);

    const job = await waitForStatus(page, code, "FAILED");
    expect(job.error?.code).toBe(errorCode);
    expect(job.progress).toBeLessThanOrEqual(failAt);
    // The helper says at once that a job that ended FAILED will not complete.
    await expect(waitForStatus(page, code, "COMPLETED", { timeoutMs: 5_000 })).rejects.toThrow(`ended FAILED (${errorCode}`);
  });

  it.each(["per-job", "multiplex"] as const)(
    "relay gives up (%s): live at first, then silence, then ERROR UPSTREAM_UNAVAILABLE after faultAfterMs + giveUpMs — while the backend completes",
    async (mode) => {
      const page = await openDemo(mode);
      await (await prepare(page, "relay-gives-up", 3000, 3000))();
      const { item, code } = await started(page);
      await shownStatus(item, "ERROR");

      await expect.poll(() => item.getByTestId("error-message").textContent()).toContain("(UPSTREAM_UNAVAILABLE)");
      const seen = await timeline(page);
      expect(statuses(seen).filter((status) => status !== "PENDING")).toEqual(["IN_PROGRESS", "ERROR"]);
      const { faultAfterMs, giveUpMs } = SCENARIOS["relay-gives-up"].fault;
      expect(firstTime(seen, "status", "ERROR") - firstTime(seen, "submit")).toBeGreaterThanOrEqual((faultAfterMs ?? 0) + (giveUpMs ?? 0));
      // Only the relay was "lost": the export itself went on.
      await waitForStatus(page, code, "COMPLETED");
      expect(await item.getAttribute("data-status")).toBe("ERROR");
    },
  );

  it.each(["per-job", "multiplex"] as const)(
    "stream drops (%s): the page shows the reconnect (waiting for a connection, then live) after 40 % and COMPLETED; progress never goes back, no state twice",
    async (mode) => {
      const page = await openDemo(mode);
      await (await prepare(page, "stream-drops", 3000, 1000))();
      const { item, code } = await started(page);
      await shownStatus(item, "COMPLETED");

      const seen = await timeline(page);
      const shownStatuses = statuses(seen);
      expect(shownStatuses.filter((status) => status !== "PENDING")).toEqual(["IN_PROGRESS", "COMPLETED"]);
      expect(new Set(shownStatuses).size, shownStatuses.join(" ")).toBe(shownStatuses.length);
      const progress = seen.filter((each) => each.kind === "progress" && each.value !== "");
      for (const [i, each] of progress.entries()) expect(Number(each.value), JSON.stringify(progress)).toBeGreaterThanOrEqual(Number(progress[i - 1]?.value ?? 0));
      // The connection as shown, each run of equal states once, from the first "live".
      const states = seen.filter((each) => each.kind === "connection" && each.value !== "").filter((each, i, all) => each.value !== all[i - 1]?.value);
      const live = states.slice(states.findIndex((each) => each.value === "open"));
      expect(live.map((each) => each.value), JSON.stringify(seen)).toEqual(["open", "connecting", "open"]);
      const { dropStreamAt } = SCENARIOS["stream-drops"].fields;
      const reached = progress.find((each) => Number(each.value) >= dropStreamAt);
      expect(live[1]?.t).toBeGreaterThanOrEqual(reached?.t ?? Infinity);
      expect((await waitForStatus(page, code, "COMPLETED")).rowsDone).toBe(3000);
    },
  );

  it("file expires: downloaded (200) at completion, then the Download link shows 410 GONE once expiresAt has passed", async () => {
    const page = await openDemo();
    const start = await prepare(page, "file-expires", 2000, 500, true);
    const first = await expectDownload(page, start, { timeoutMs: 20_000 });
    const { item, code } = await started(page);
    const job = await waitForStatus(page, code, "COMPLETED");
    expect(first.sha256).toBe(job.file?.sha256);

    const expiresAt = Date.parse(job.file?.expiresAt ?? "");
    const completedAt = Date.parse(job.updatedAt);
    expect(expiresAt - completedAt).toBeLessThanOrEqual(SCENARIOS["file-expires"].fields.expireAfterMs + 1_000);
    const link = item.getByTestId("download-link");
    // Before the expiry the Download link downloads the file (the demo asks for its first byte first).
    await expectDownload(page, () => link.click(), { sha256: job.file?.sha256 ?? "" });
    // The documented expiry, by the server's clock (same machine): wait for it, bounded.
    await expect.poll(() => Date.now() > expiresAt + 100, { timeout: 15_000, interval: 100 }).toBe(true);
    const downloads: string[] = [];
    page.on("download", (download) => downloads.push(download.url()));
    await link.click();

    await expect.poll(() => item.getByTestId("download-error").textContent()).toContain("410 GONE");
    expect(await item.getByTestId("download-error").textContent()).toContain("expired");
    expect(downloads).toEqual([]);
  });

  it("startExport from the page: the export is the page's session's (the demo lists it after a reload)", async () => {
    const page = await openDemo();
    const job = await startExport(page, { rows: 1000, durationMs: 500, ...SCENARIOS["fails-at-60"].fields });
    expect(job.status).toBe("PENDING");
    await page.reload();
    const { item, code } = await started(page);
    expect(code).toBe(job.code);
    await shownStatus(item, "FAILED");
    await expect(startExport(page, { rows: 0 })).rejects.toMatchObject({ name: "ExportError", httpStatus: 422, code: "VALIDATION_FAILED" });
  });

  it("rows per second: paced by rowsPerSecond, not by the duration field", async () => {
    const page = await openDemo();
    const rows = 2000;
    // Duration 0 (as fast as it goes) unless the scenario's pace replaces it.
    await (await prepare(page, "rows-per-second", rows, 0))();
    const { item, code } = await started(page);
    await shownStatus(item, "COMPLETED");

    const seen = await timeline(page);
    const tookMs = firstTime(seen, "status", "COMPLETED") - firstTime(seen, "submit");
    const paceMs = (rows / SCENARIOS["rows-per-second"].fields.rowsPerSecond) * 1000;
    expect(tookMs).toBeGreaterThanOrEqual(paceMs * 0.9);
    const job = await waitForJob(page, code, (each) => each.status === "COMPLETED");
    expect(job.rowsDone).toBe(rows);
  });
});
