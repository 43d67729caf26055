"use client";
import { type FormEvent, startTransition } from "react";
import { sendFeedback } from "./feedback";

/** The form's words, in the page's language (the server's translator stays on the server). */
export interface FeedbackWords {
  heading: string;
  legend: string;
  /** "1 of 5" … "5 of 5". */
  stars: string[];
  message: string;
  send: string;
  /** The refusal to show, if the last post was refused. */
  error?: string;
}

/**
 * The rating and message form. Sent from its submit handler rather than by React's form action,
 * which resets the form once the action returns: a refused form's stars and message were lost (as
 * the tip form's amount was, c2f9c165). Without scripts it still posts to the server action.
 */
export function FeedbackForm({ tipId, back, words }: { tipId: string; back: string; words: FeedbackWords }) {
  const submit = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget);
    startTransition(() => sendFeedback(data));
  };
  return (
    <form action={sendFeedback} onSubmit={submit} aria-labelledby="feedback-heading">
      <h2 id="feedback-heading">{words.heading}</h2>
      {words.error ? <p className="error" role="alert">{words.error}</p> : null}
      <input type="hidden" name="tip" value={tipId} />
      <input type="hidden" name="back" value={back} />
      <fieldset>
        <legend>{words.legend}</legend>
        <div className="stars">
          {words.stars.map((label, i) => (
            <label key={label} className="check">
              <input type="radio" name="rating" value={i + 1} required />
              <span aria-hidden="true">{i + 1}★</span>
              <span className="sr-only">{label}</span>
            </label>
          ))}
        </div>
      </fieldset>
      <label className="field" htmlFor="message">{words.message}</label>
      <textarea id="message" name="message" maxLength={280} rows={3} />
      <button type="submit" className="secondary">{words.send}</button>
    </form>
  );
}
