// The currencies a card tip may be paid in (the card form's choice; the server page picks the default).
export const CARD_CURRENCIES: readonly string[] = ["KES", "USD", "EUR", "GBP"];
