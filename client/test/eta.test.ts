// @vitest-environment jsdom
/**
 * etaMs: the estimator on a scripted timeline, and where the app reads it (the
 * listener's snapshot event, useExport's state).
 */
import { act, cleanup, render, screen } from "@testing-library/react";
import { createElement } from "react";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it } from "vitest";
import { EtaEstimator } from "../src/eta.js";
import { ExportClientProvider, useExport } from "../src/react.js";
import { CODE, completed, fakeClient, flush, job, onlySource, recorder, routedFetch } from "./fakes.js";

/** A snapshot of 10,000 rows with `rowsDone` done, `ms` after 09:00:00. */
function at(ms: number, rowsDone: number, seq: number) {
  const updatedAt = new Date(Date.parse("2026-11-25T09:00:00Z") + ms).toISOString();
  return job({ seq, rowsDone, rowsTotal: 10_000, progress: Math.floor(rowsDone / 100), updatedAt });
}

describe("EtaEstimator", () => {
  it("is undefined until two points, then the remaining rows over the smoothed rate, 0 at the end", () => {
    const eta = new EtaEstimator();
    expect(eta.update({ ...at(-500, 0, 1), status: "PENDING" })).toBeUndefined();
    expect(eta.update(at(0, 0, 2))).toBeUndefined(); // first point of progress (PENDING was none)
    // 1,000 rows in 1 s: 1 row/ms, 9,000 rows left.
    expect(eta.update(at(1_000, 1_000, 3))).toBe(9_000);
    // Steady: the estimate counts down with the clock.
    expect(eta.update(at(2_000, 2_000, 4))).toBe(8_000);
    // The job slows to 0.25 row/ms for a second: smoothed 0.3·0.25 + 0.7·1 = 0.775 row/ms,
    // not the 31 s the last sample alone would say.
    expect(eta.update(at(3_000, 2_250, 5))).toBe(Math.round(7_750 / 0.775));
    // Same updatedAt again (two changes in one instant): no sample, estimate unchanged.
    expect(eta.update(at(3_000, 2_300, 6))).toBe(Math.round(7_750 / 0.775));
    expect(eta.update(completed(7))).toBe(0);
  });

  it("starts over when the rows go back (a retried generation), and says nothing while no row moves", () => {
    const eta = new EtaEstimator();
    eta.update(at(0, 4_000, 1));
    expect(eta.update(at(1_000, 5_000, 2))).toBe(5_000);
    expect(eta.update(at(2_000, 100, 3))).toBeUndefined();
    expect(eta.update(at(3_000, 100, 4))).toBeUndefined(); // rate 0: no estimate, not infinity
    expect(eta.update(at(4_000, 1_100, 5))).toBe(Math.round(8_900 / (0.3 * 1 + 0.7 * 0)));
  });
});

describe("etaMs where the app reads it", () => {
  afterEach(cleanup);

  it("comes with the listener's snapshot events", async () => {
    const client = fakeClient();
    const each = recorder();
    client.subscribe(CODE, each.listener);
    await flush();
    const source = onlySource();
    source.emit(at(0, 0, 1));
    source.emit(at(500, 1_000, 2));
    source.emit(completed(3));
    expect(each.events.map((event) => (event.type === "snapshot" ? event.etaMs : "error"))).toEqual([undefined, 4_500, 0]);
  });

  function Eta(): ReactNode {
    const { etaMs } = useExport(CODE);
    return createElement("p", { "data-testid": "eta" }, etaMs === undefined ? "-" : `${Math.round(etaMs / 1000)} s left`);
  }

  it("is 0 in useExport's state for a job known to have ended", async () => {
    const { fetch } = routedFetch({ [`GET http://bff.test/api/exports/${CODE}`]: [200, completed(3)] });
    const client = fakeClient({ fetch });
    await client.get(CODE);
    render(createElement(ExportClientProvider, { client }, createElement(Eta)));
    expect(screen.getByTestId("eta").textContent).toBe("0 s left");
  });

  it("is in useExport's state", async () => {
    const client = fakeClient();
    render(createElement(ExportClientProvider, { client }, createElement(Eta)));
    await act(flush);
    const source = onlySource();
    act(() => source.emit(at(0, 0, 1)));
    expect(screen.getByTestId("eta").textContent).toBe("-");
    act(() => source.emit(at(1_000, 500, 2)));
    expect(screen.getByTestId("eta").textContent).toBe("19 s left");
    act(() => source.emit(completed(3)));
    expect(screen.getByTestId("eta").textContent).toBe("0 s left");
  });
});
