/**
 * A test double of Stripe.js (normally https://js.stripe.com/v3/), served by the
 * simulator at /v3/ so nothing loads from the internet in `make run` and the
 * browser tests. It offers what the tip page uses: Stripe(pk), elements({ clientSecret }),
 * elements.create("payment").mount(el), stripe.confirmPayment({ elements, confirmParams, redirect }).
 * Its "Payment Element" is a list of the simulator's test cards.
 */
export function stripeJsDouble(apiBase: string): string {
  return `(function () {
  var API = ${JSON.stringify(apiBase)};
  var CARDS = [["pm_card_visa", "Visa 4242 (succeeds)"], ["pm_card_threeDSecure2Required", "Visa 3220 (3-D Secure)"],
    ["pm_card_chargeDeclined", "Visa 0002 (declined)"], ["pm_card_chargeDeclinedInsufficientFunds", "Visa 9995 (insufficient funds)"],
    ["pm_card_gb", "UK Visa (issued in GB)"], ["pm_card_createDispute", "Visa 0259 (disputed later)"]];
  window.Stripe = function (pk) {
    var chosen = { value: CARDS[0][0] };
    return {
      elements: function (opts) {
        var secret = opts && opts.clientSecret;
        return {
          _secret: secret,
          create: function () {
            return {
              mount: function (target) {
                var el = typeof target === "string" ? document.querySelector(target) : target;
                var sel = document.createElement("select");
                sel.setAttribute("data-testid", "stripe-test-card");
                sel.setAttribute("aria-label", "Test card");
                CARDS.forEach(function (c) { var o = document.createElement("option"); o.value = c[0]; o.textContent = c[1]; sel.appendChild(o); });
                sel.onchange = function () { chosen.value = sel.value; };
                el.appendChild(sel);
              },
              on: function () {}, unmount: function () {}, destroy: function () {}
            };
          }
        };
      },
      confirmPayment: function (args) {
        var secret = args.elements._secret;
        var pi = secret.split("_secret_")[0];
        var returnUrl = (args.confirmParams && args.confirmParams.return_url) || "";
        var body = new URLSearchParams({ payment_method: chosen.value, client_secret: secret, return_url: returnUrl });
        // Like Stripe.js, a redirect leaves the page and the promise never settles: a caller that
        // went on after it would race the navigation.
        var leave = function (url) { window.location.assign(url); return new Promise(function () {}); };
        return fetch(API + "/v1/payment_intents/" + pi + "/confirm", { method: "POST", headers: { authorization: "Bearer " + pk }, body: body })
          .then(function (r) { return r.json(); })
          .then(function (j) {
            if (j.error) return { error: j.error };
            if (j.status === "requires_action" && j.next_action && j.next_action.redirect_to_url) return leave(j.next_action.redirect_to_url.url);
            if (args.redirect !== "if_required" && returnUrl) return leave(returnUrl + (returnUrl.indexOf("?") < 0 ? "?" : "&") + "payment_intent=" + pi);
            return { paymentIntent: j };
          });
      }
    };
  };
})();
`;
}
