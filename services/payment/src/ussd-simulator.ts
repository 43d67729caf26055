// A USSD gateway simulator speaking Africa's Talking's callback shape: each
// step is a form POST (sessionId, serviceCode, phoneNumber, networkCode, text
// = every answer so far joined by "*") and the answer is plain text starting
// "CON " (show it and wait) or "END " (the session is over). Like a real
// network it ends a session that waits too long for the user.
//
// As a library: `new UssdSession(url, phone).dial()`, then `.reply("1")`...
// From a terminal (make run prints the URL):
//   node --import tsx services/payment/src/ussd-simulator.ts <callback url> <phone> [answer ...]
// with answers it plays them as a script; without, it asks you at each screen.
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline/promises";
import { fileURLToPath } from "node:url";

export interface UssdScreen {
  /** The text sent (cumulative). */
  text: string;
  /** The whole answer, "CON ..." or "END ...". */
  answer: string;
  /** Round trip in milliseconds. */
  ms: number;
}

export interface UssdSessionOptions {
  /** The code the user dialled, e.g. "*483*123#". */
  serviceCode?: string;
  sessionId?: string;
  /** The network ends a session idle this long between screens (Safaricom: about 30 s per screen). */
  networkTimeoutMs?: number;
  /** How long the gateway waits for the service's answer. */
  answerTimeoutMs?: number;
}

export class UssdSessionEnded extends Error {}

export class UssdSession {
  readonly sessionId: string;
  readonly screens: UssdScreen[] = [];
  private readonly answers: string[] = [];
  private lastAt = 0;
  ended = false;

  constructor(
    readonly url: string,
    readonly phoneNumber: string,
    readonly options: UssdSessionOptions = {},
  ) {
    this.sessionId = options.sessionId ?? `ATUid_${randomBytes(12).toString("hex")}`;
  }

  /** The first request of a session (text empty, or the digits dialled after the service code). */
  dial(dialled = ""): Promise<string> {
    // A phone's keypad dials digits, * and # only: a dial string with a letter never reaches the network.
    if (!/^[0-9*]*$/.test(dialled)) throw new Error(`a phone cannot dial ${this.options.serviceCode ?? "*483*123#"} with "${dialled}": only 0-9 and * are dialled`);
    if (dialled) this.answers.push(dialled);
    return this.send();
  }

  /** The user's answer to the screen shown. */
  async reply(input: string): Promise<string> {
    if (this.ended) throw new UssdSessionEnded("the session has ended");
    if (this.lastAt && Date.now() - this.lastAt > (this.options.networkTimeoutMs ?? 30_000)) {
      this.ended = true;
      throw new UssdSessionEnded("the network ended the session: no answer in time");
    }
    this.answers.push(input);
    return this.send();
  }

  /** A request with `text` as the session's whole text (a gateway replaying a dialogue's answers so far). */
  replayText(text: string): Promise<string> {
    this.answers.splice(0, this.answers.length, text);
    return this.send();
  }

  /** Sends the last request again, as a gateway does after a lost answer. */
  repeat(): Promise<string> {
    return this.send();
  }

  private async send(): Promise<string> {
    const text = this.answers.join("*");
    const started = performance.now();
    const res = await fetch(this.url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ sessionId: this.sessionId, serviceCode: this.options.serviceCode ?? "*483*123#", phoneNumber: this.phoneNumber, networkCode: "63902", text }),
      signal: AbortSignal.timeout(this.options.answerTimeoutMs ?? 10_000),
    });
    const answer = await res.text();
    if (!answer.startsWith("CON ") && !answer.startsWith("END ")) throw new Error(`not a USSD answer (HTTP ${res.status}): ${answer.slice(0, 200)}`);
    this.screens.push({ text, answer, ms: Math.round(performance.now() - started) });
    this.lastAt = Date.now();
    if (answer.startsWith("END ")) this.ended = true;
    return answer;
  }
}

/** Plays a scripted dialogue: dial, then each answer in turn; stops at the first END. */
export async function playDialogue(url: string, phoneNumber: string, answers: string[], options: UssdSessionOptions = {}): Promise<UssdSession> {
  const session = new UssdSession(url, phoneNumber, options);
  await session.dial();
  for (const a of answers) {
    if (session.ended) break;
    await session.reply(a);
  }
  return session;
}

async function main(argv: string[]): Promise<void> {
  const [url, phone, ...script] = argv;
  if (!url || !phone) {
    process.stderr.write("usage: ussd-simulator.ts <callback url> <phone> [answer ...]\n");
    process.exitCode = 2;
    return;
  }
  const session = new UssdSession(url, phone, { networkTimeoutMs: 120_000 });
  const show = (answer: string) => process.stdout.write(`\n${answer.slice(4)}\n${answer.startsWith("END ") ? "[session ended]\n" : ""}`);
  show(await session.dial());
  if (script.length) {
    for (const a of script) {
      if (session.ended) break;
      process.stdout.write(`> ${a}\n`);
      show(await session.reply(a));
    }
    return;
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    while (!session.ended) show(await session.reply((await rl.question("> ")).trim()));
  } finally {
    rl.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}
