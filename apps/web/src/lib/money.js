// Money on screen: int64 minor units in, never a float out.
/** "KES 1,050" for whole units, "KES 1,050.50" otherwise (KES has 2 minor digits). */
export function formatMoney(minor, currency = "KES") {
    const negative = minor < 0n;
    const abs = negative ? -minor : minor;
    const whole = (abs / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const cents = abs % 100n;
    return `${negative ? "-" : ""}${currency} ${whole}${cents ? `.${cents.toString().padStart(2, "0")}` : ""}`;
}
/**
 * Whole shillings typed by a person ("250", "1,000") as minor units, or
 * undefined when it is not a whole positive number within `max` units.
 * M-Pesa moves whole shillings only, as the contract says.
 */
export function parseWholeUnits(text, max = 250_000) {
    const t = text.replace(/[\s,]/g, "");
    if (!/^[0-9]{1,7}$/.test(t))
        return undefined;
    const units = BigInt(t);
    if (units <= 0n || units > BigInt(max))
        return undefined;
    return units * 100n;
}
