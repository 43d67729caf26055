// Kenyan mobile numbers as people type them: 07XX…, 01XX…, 7XX…, +2547…, 2547….
/** The number in Daraja's form (2547XXXXXXXX), or undefined when it is not a Kenyan mobile number. */
export function normaliseKenyanPhone(text) {
    const t = text.replace(/[\s\-()]/g, "");
    const m = /^(?:\+?254|0)?([71][0-9]{8})$/.exec(t);
    return m ? `254${m[1]}` : undefined;
}
