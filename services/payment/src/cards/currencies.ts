// The currencies card tips are taken in (KES, M-Pesa's, among them): each has a fee schedule and a
// rate to KES in wallet. Free of imports, so the admin console's browser bundle and the web app's card form
// (@ttip/payment/card-currencies) read this same list.
export const CARD_CURRENCIES: readonly string[] = Object.freeze(["KES", "USD", "EUR", "GBP"]);
/** Those PayPal takes: it holds no KES (its list of currencies has none). */
export const PAYPAL_CURRENCIES: readonly string[] = Object.freeze(CARD_CURRENCIES.filter((c) => c !== "KES"));
/**
 * The least a card tip charges, per currency, in minor units: Stripe's least charge is USD 0.50 or its equivalent in
 * the account's settlement currency, so 0.50 of each (KES 100, about USD 0.77): at or above USD 0.50 while EUR and
 * GBP are worth a dollar or more. Below it Stripe refuses the charge after the tip is stored.
 */
export const STRIPE_LEAST_MINOR: Readonly<Record<string, bigint>> = Object.freeze({ KES: 100_00n, USD: 50n, EUR: 50n, GBP: 50n });
