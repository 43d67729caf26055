// Phone numbers for tests: Safaricom-shaped (7 and eight digits after 254), never the same twice in a
// test process, and never one a simulator acts on unless asked. A number drawn twice in a file mixes
// two tests' pushes, texts or sign-ins; one ending as a simulator's marker gets a scripted reply
// (Daraja: a lost callback, a failed payout; SMS: a refusal) the test did not ask for. Files run in
// parallel share the test servers (Redis's per-number OTP budgets and rate limits, NATS), so a number
// is also never issued twice in one `make test` run: run-tests.ts names a folder where each file's
// process claims its numbers.
import { randomInt } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import path from "node:path";

/**
 * The simulators act on a number by its last four digits, and keep their markers below this:
 * payment's Daraja simulator (PHONE_SUFFIX_SCRIPTS: 0001-0017, 1032, 1037, 2001) and auth's SMS
 * simulator (refuses numbers ending 0000). A plain test number ends in this or above; those
 * simulators' tests hold their markers to it.
 */
export const PLAIN_PHONE_SUFFIX_FROM = 5000;

/** How a test writes the number: 0712345678, 254712345678 or +254712345678. */
export type PhoneFormat = "07" | "254" | "+254";

export interface TestPhoneOptions {
  format?: PhoneFormat;
  /** Four digits to end in: a simulator's marker, to script its reply (Daraja's "0003": the callback lost). */
  suffix?: string;
}

const MIDDLES = 10_000;
/** The subscriber digits (7 and eight) issued in this process, whatever their format. */
const issued = new Set<string>();
/** Set by run-tests.ts for the files it runs: one empty file per number issued in the run. */
export const TEST_PHONES_DIR_ENV = "TTIP_TEST_PHONES_DIR";

/** Whether no other process of this run holds `subscriber`: claims it if so (creating its file is atomic). */
function claimInRun(subscriber: string): boolean {
  const dir = process.env[TEST_PHONES_DIR_ENV];
  if (!dir) return true;
  try {
    closeSync(openSync(path.join(dir, subscriber), "wx"));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}

function fourDigits(suffix: string): string {
  if (!/^\d{4}$/.test(suffix)) throw new Error(`a phone suffix is four digits, not ${JSON.stringify(suffix)}`);
  return suffix;
}

/** Whether a simulator may act on a number ending in these four digits (plain test numbers never do). */
export const isSimulatorMarker = (suffix: string): boolean => Number(fourDigits(suffix)) < PLAIN_PHONE_SUFFIX_FROM;

/** A fresh number: random, plain unless `suffix` asks for a marker, never one this process (or this run) issued before. */
export function testPhone(options: TestPhoneOptions = {}): string {
  const { format = "254", suffix } = options;
  if (suffix !== undefined) fourDigits(suffix);
  // 10,000 middles per suffix: give up well before a full scan would be needed.
  for (let draws = 0; draws < MIDDLES; draws++) {
    const end = suffix ?? String(randomInt(PLAIN_PHONE_SUFFIX_FROM, 10_000));
    const subscriber = `7${String(randomInt(MIDDLES)).padStart(4, "0")}${end}`;
    if (issued.has(subscriber)) continue;
    issued.add(subscriber);
    if (!claimInRun(subscriber)) continue;
    return format === "07" ? `0${subscriber}` : `${format}${subscriber}`;
  }
  throw new Error(`no fresh test phone number left${suffix ? ` ending in ${suffix}` : ""}`);
}
