// The currencies the platform takes money in (M-Pesa's KES and card tips'): payment's one list, so a
// currency payment starts taking is offered here too. Figures are per currency, never summed across.
import { CARD_CURRENCIES } from "../../../services/payment/src/cards/currencies";
import { parseUnits } from "../../web/src/lib/money";

/** What money screens open on: M-Pesa's currency. */
export const FIRST_CURRENCY = "KES";
export const PLATFORM_CURRENCIES: readonly string[] = CARD_CURRENCIES;

/** "1,250.50" → 125050n in KES (by the currency's minor digits); undefined when it is not an amount: the apps' one strict parser. */
export function minorOf(text: string, currency: string): bigint | undefined {
  return parseUnits(text, currency);
}

/** A currency select; with `anyLabel`, an empty choice first (no currency: every one). */
export function CurrencyChoice({ label, value, onChange, anyLabel, field }: { label: string; value: string; onChange: (currency: string) => void; anyLabel?: string; field?: string }) {
  return (
    <select aria-label={label} data-field={field} value={value} onChange={(e) => onChange(e.target.value)}>
      {anyLabel !== undefined && <option value="">{anyLabel}</option>}
      {PLATFORM_CURRENCIES.map((c) => <option key={c} value={c}>{c}</option>)}
    </select>
  );
}
