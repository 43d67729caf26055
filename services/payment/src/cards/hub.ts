import type { Ledger } from "../ledger.js";
import type { CardsConfig } from "./config.js";
import { CardLedger } from "./ledger.js";
import type { CardProvider, CardProviderName } from "./provider.js";
import { PayPalCardProvider } from "./paypal.js";
import { StripeCardProvider } from "./stripe.js";
import { perConfiguration } from "../per-configuration.js";

/** The configured card providers (one client per configuration: per-configuration.ts) and the card side of the ledger. */
export interface CardHub {
  provider(name: CardProviderName): CardProvider | undefined;
  ledger: CardLedger;
}

export function createCardHub(ledger: Ledger, config: () => CardsConfig | undefined): CardHub {
  const stripe = perConfiguration(() => config()?.stripe, (c) => new StripeCardProvider(c));
  const paypal = perConfiguration(() => config()?.paypal, (c) => new PayPalCardProvider(c));
  return {
    ledger: new CardLedger(ledger),
    provider: (name) => (name === "stripe" ? stripe() : name === "paypal" ? paypal() : undefined),
  };
}
