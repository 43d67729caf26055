import { parseDecimal } from "./money.js";
import { NotConfiguredError } from "@ttip/runtime";

export interface Rate {
  /** Units of `to` per one unit of `from`, as an exact decimal string. */
  rate: string;
  source: string;
  time: Date;
}

/** Where exchange rates come from; a live feed implements the same interface. */
export interface RateSource {
  rate(from: string, to: string): Promise<Rate>;
}

const DIGITS = 8n;

/**
 * Rates configured as KES per unit of each currency ("USD=129.20,EUR=140.10"),
 * crossed through KES for other pairs, with 8 decimal places, rounded half up.
 */
export class FixedRateSource implements RateSource {
  private readonly perKes: Map<string, { units: bigint; scale: bigint }>;

  constructor(spec: string, private readonly source = "configured", private readonly time = new Date()) {
    this.perKes = new Map([["KES", { units: 1n, scale: 1n }]]);
    for (const part of spec.split(",").map((p) => p.trim()).filter(Boolean)) {
      const [code, value] = part.split("=");
      if (!/^[A-Z]{3}$/.test(code ?? "") || !value) throw new Error(`FX rate "${part}" must look like USD=129.20`);
      this.perKes.set(code, parseDecimal(value, `rate ${code}`));
    }
  }

  async rate(from: string, to: string): Promise<Rate> {
    const a = this.perKes.get(from);
    const b = this.perKes.get(to);
    if (!a || !b) throw new NotConfiguredError(`no exchange rate from ${from} to ${to}`);
    if (from === to) return { rate: "1", source: this.source, time: this.time };
    // (a.units/a.scale) / (b.units/b.scale), to DIGITS places.
    const num = a.units * b.scale * 10n ** DIGITS;
    const den = a.scale * b.units;
    const scaled = (num * 2n + den) / (den * 2n);
    const text = scaled.toString().padStart(Number(DIGITS) + 1, "0");
    return { rate: `${text.slice(0, -Number(DIGITS))}.${text.slice(-Number(DIGITS))}`, source: this.source, time: this.time };
  }
}

export const DEFAULT_FX_RATES = "USD=129.20,EUR=140.10,GBP=164.30";
