/** A tip's outcomes that read the same whichever way it was paid (M-Pesa or card). */
export const TIP_OUTCOME_WORDS: Record<string, { en: string; sw: string }> = {
  "0": { en: "Payment received. Thank you!", sw: "Malipo yamepokelewa. Asante!" },
  review: { en: "Payment received; the tip is being reviewed before it reaches the worker.", sw: "Malipo yamepokelewa; tip inakaguliwa kabla ya kumfikia mfanyakazi." },
  review_rejected: { en: "The tip was declined after review; your payment will be refunded.", sw: "Tip imekataliwa baada ya ukaguzi; malipo yako yatarejeshwa." },
  // Declined, and its payment (a paybill payment parked in suspense) back with support, who may refund it or credit it to the code it was meant for.
  review_rejected_reopened: {
    en: "The tip was declined after review. Your payment is with support, who will either refund it or pass it on to the code it was meant for.",
    sw: "Tip imekataliwa baada ya ukaguzi. Malipo yako yako kwa huduma kwa wateja, ambao watayarejesha kwako au kuyapeleka kwa msimbo uliokusudiwa.",
  },
};

// Daraja result codes in words a customer understands (English and Swahili).
const MESSAGES: Record<string, { en: string; sw: string }> = {
  ...TIP_OUTCOME_WORDS,
  "1": { en: "Your M-Pesa balance is too low for this tip. Nothing was charged; top up or choose a smaller amount.", sw: "Salio lako la M-Pesa halitoshi kwa tip hii. Hakuna pesa iliyotozwa; ongeza salio au chagua kiasi kidogo." },
  "1001": { en: "M-Pesa is busy with another transaction on your phone. Nothing was charged; try again in a minute.", sw: "M-Pesa inashughulikia muamala mwingine kwenye simu yako. Hakuna pesa iliyotozwa; jaribu tena baada ya dakika moja." },
  // Daraja's synchronous refusal of a push while another transaction is in process on the phone: 1001's words.
  "500.001.1001": { en: "M-Pesa is busy with another transaction on your phone. Nothing was charged; try again in a minute.", sw: "M-Pesa inashughulikia muamala mwingine kwenye simu yako. Hakuna pesa iliyotozwa; jaribu tena baada ya dakika moja." },
  "1019": { en: "The M-Pesa request expired. Nothing was charged; please try again.", sw: "Ombi la M-Pesa limepitwa na muda. Hakuna pesa iliyotozwa; tafadhali jaribu tena." },
  "1025": { en: "M-Pesa could not send the payment prompt. Nothing was charged; please try again.", sw: "M-Pesa haikuweza kutuma ombi la malipo. Hakuna pesa iliyotozwa; tafadhali jaribu tena." },
  "9999": { en: "M-Pesa could not send the payment prompt. Nothing was charged; please try again.", sw: "M-Pesa haikuweza kutuma ombi la malipo. Hakuna pesa iliyotozwa; tafadhali jaribu tena." },
  "1032": { en: "You cancelled the M-Pesa payment. Nothing was charged.", sw: "Umesitisha malipo ya M-Pesa. Hakuna pesa iliyotozwa." },
  "1037": { en: "We could not reach your phone, or the prompt was not answered in time. Nothing was charged.", sw: "Hatukuweza kufikia simu yako, au ombi halikujibiwa kwa wakati. Hakuna pesa iliyotozwa." },
  "2001": { en: "The M-Pesa PIN was wrong. Nothing was charged.", sw: "PIN ya M-Pesa si sahihi. Hakuna pesa iliyotozwa." },
  "17": { en: "M-Pesa refused a repeat of the same amount from this number within 2 minutes. Nothing was charged; wait 2 minutes or change the amount.", sw: "M-Pesa imekataa kurudia kiasi kilekile kutoka nambari hii ndani ya dakika 2. Hakuna pesa iliyotozwa; subiri dakika 2 au badilisha kiasi." },
  SFC_IC0003: { en: "This M-Pesa number does not exist. Check the number. Nothing was charged.", sw: "Nambari hii ya M-Pesa haipo. Hakikisha nambari. Hakuna pesa iliyotozwa." },
  expired: { en: "No answer from M-Pesa in time. If you were charged, the tip will still reach the worker.", sw: "Hakuna jibu kutoka M-Pesa kwa wakati. Kama ulitozwa, tip itamfikia mfanyakazi." },
  unavailable: { en: "M-Pesa is not available right now. Nothing was charged; please try again.", sw: "M-Pesa haipatikani kwa sasa. Hakuna pesa iliyotozwa; tafadhali jaribu tena." },
  // Our own codes for a payment M-Pesa took that was placed elsewhere by support before its tip heard of it (tips.ts, receiptSpent).
  refunded: { en: "Your payment was refunded to you, so the tip was not sent.", sw: "Malipo yako yamerejeshwa kwako, kwa hivyo tip haikutumwa." },
  paid_elsewhere: { en: "Your payment was already credited as another tip, so this tip was not paid a second time.", sw: "Malipo yako tayari yamewekwa kama tip nyingine, kwa hivyo tip hii haikulipwa mara ya pili." },
};

export function resultMessage(code: string, locale = "en"): string {
  const m = MESSAGES[code] ?? { en: "M-Pesa could not complete the payment. Nothing was charged.", sw: "M-Pesa haikuweza kukamilisha malipo. Hakuna pesa iliyotozwa." };
  return locale.toLowerCase().startsWith("sw") ? m.sw : m.en;
}
