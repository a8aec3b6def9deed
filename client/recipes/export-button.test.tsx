// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { ExportClientProvider } from "@exportstream/client/react";
import { createFakeExportServer } from "@exportstream/client/testing";
import type { FakeExportServer, RelayFault, Scenario } from "@exportstream/client/testing";
import { ExportButton } from "./export-button.js";

let server: FakeExportServer;

beforeEach(() => vi.useFakeTimers());
afterEach(() => {
  cleanup();
  server.close();
  vi.useRealTimers();
});

/** Renders the button against a fake server whose exports follow `scenario`, and clicks it. */
async function clickExport(scenario: Scenario, relayGivesUp?: RelayFault) {
  server = createFakeExportServer({ scenario, ...(relayGivesUp && { relayGivesUp }) });
  render(
    <ExportClientProvider client={server.client}>
      <ExportButton rows={1000} />
    </ExportClientProvider>,
  );
  fireEvent.click(screen.getByRole("button", { name: "Export" }));
  await wait(0);
}

/** Lets `ms` of fake time pass, with React's updates applied. */
const wait = (ms: number) => act(() => vi.advanceTimersByTimeAsync(ms));

it("shows the export waiting, then its progress, then downloads its file once", async () => {
  await clickExport({ startDelayMs: 1000, durationMs: 2000 });
  expect(screen.getByRole("status").textContent).toBe("Waiting…");
  expect(screen.getByRole("button", { name: "Export" })).toHaveProperty("disabled", true);

  await wait(2000); // 1 s of the 2 s export: progress comes every 100 ms, as the server's
  expect(screen.getByRole("status").textContent).toBe("Exporting… 47%");

  await wait(1000);
  expect(screen.getByRole("status").textContent).toBe("Done: the download has started");
  expect(server.downloads).toEqual([expect.objectContaining({ name: expect.stringMatching(/\.csv$/), once: true })]);
});

it("shows the error code of an export that fails at 60 %", async () => {
  await clickExport({ durationMs: 1000, failAt: 60, errorCode: "QUOTA_EXCEEDED" });
  await wait(500);
  expect(screen.getByRole("status").textContent).toBe("Exporting… 45%");

  await wait(500);
  expect(screen.getByRole("alert").textContent).toBe("Export failed (QUOTA_EXCEEDED)");
  expect(server.downloads).toEqual([]);
});

it("shows the error when the server loses the export service for good", async () => {
  await clickExport({ durationMs: 10_000 }, { afterMs: 1000, giveUpMs: 3000 });
  await wait(1000);
  expect(screen.getByRole("status").textContent).toBe("Exporting… 9%");

  await wait(3000); // no news for 3 s, then the server's give-up
  expect(screen.getByRole("alert").textContent).toBe("Export failed (UPSTREAM_UNAVAILABLE)");
});
