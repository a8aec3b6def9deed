/**
 * Compile-time check of the client's wire types against docs/fixtures: every
 * field a fixture has is a field of the type, every field of the type is in
 * some fixture, a field is optional in the type exactly when some fixture
 * lacks it, and each value is assignable (`wire` in fakes.ts, `satisfies`). A field
 * renamed in the fixtures (hence in Go, whose test round-trips them) or in
 * src/types.ts fails `tsc` here.
 */
import { describe, expectTypeOf, it } from "vitest";
import type { ErrorBody, ExportFile, Job, StreamErrorEvent } from "../src/types.js";
import type { JobFixture, wire } from "./fakes.js";

/** The keys of every member of a union (keyof a union is only the common ones). */
type AnyKey<T> = T extends unknown ? keyof T : never;
/** The keys T requires. */
type RequiredKey<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];

describe("the client's types match docs/fixtures", () => {
  it("Job: the same fields, required exactly when every fixture has them", () => {
    expectTypeOf<Exclude<AnyKey<JobFixture>, keyof Job>>().toEqualTypeOf<never>(); // a fixture field the type lacks
    expectTypeOf<Exclude<keyof Job, AnyKey<JobFixture>>>().toEqualTypeOf<never>(); // a type field no fixture has
    expectTypeOf<keyof JobFixture>().toEqualTypeOf<RequiredKey<Job>>(); // in every fixture ⇔ required
    expectTypeOf<JobFixture>().toExtend<Job>();
  });

  it("ExportFile: exactly the fields of a COMPLETED fixture's file", () => {
    type File = (typeof wire.jobs)["job-completed.json"]["file"];
    expectTypeOf<Exclude<keyof File, keyof ExportFile>>().toEqualTypeOf<never>();
    expectTypeOf<Exclude<keyof ExportFile, keyof File>>().toEqualTypeOf<never>();
    expectTypeOf<keyof File>().toEqualTypeOf<RequiredKey<ExportFile>>();
  });

  it("ErrorBody: exactly the fields of a FAILED fixture's error and of the ERROR event's", () => {
    type Failure = (typeof wire.jobs)["job-failed.json"]["error"] | (typeof wire.errorEvent)["error"];
    expectTypeOf<AnyKey<Failure>>().toEqualTypeOf<keyof ErrorBody>();
    expectTypeOf<keyof Failure>().toEqualTypeOf<RequiredKey<ErrorBody>>();
  });

  it("StreamErrorEvent: exactly the fields of error-event.json", () => {
    expectTypeOf<keyof typeof wire.errorEvent>().toEqualTypeOf<keyof StreamErrorEvent>();
    expectTypeOf<keyof typeof wire.errorEvent>().toEqualTypeOf<RequiredKey<StreamErrorEvent>>();
    expectTypeOf<typeof wire.errorEvent>().toExtend<StreamErrorEvent>();
  });
});
