import type { Ledger } from "../ledger.js";
import type { CardsConfig } from "./config.js";
import { CardLedger } from "./ledger.js";
import type { CardProvider, CardProviderName } from "./provider.js";
import { PayPalCardProvider } from "./paypal.js";
import { StripeCardProvider } from "./stripe.js";

/** The configured card providers (one client per set of credentials) and the card side of the ledger. */
export interface CardHub {
  provider(name: CardProviderName): CardProvider | undefined;
  ledger: CardLedger;
}

export function createCardHub(ledger: Ledger, config: () => CardsConfig | undefined): CardHub {
  let stripe: { key: string; provider: StripeCardProvider } | undefined;
  let paypal: { key: string; provider: PayPalCardProvider } | undefined;
  return {
    ledger: new CardLedger(ledger),
    provider(name) {
      const c = config();
      if (name === "stripe" && c?.stripe) {
        const key = JSON.stringify(c.stripe);
        if (stripe?.key !== key) stripe = { key, provider: new StripeCardProvider(c.stripe) };
        return stripe.provider;
      }
      if (name === "paypal" && c?.paypal) {
        const key = JSON.stringify(c.paypal);
        if (paypal?.key !== key) paypal = { key, provider: new PayPalCardProvider(c.paypal) };
        return paypal.provider;
      }
      return undefined;
    },
  };
}
