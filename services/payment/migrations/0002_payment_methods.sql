-- Saved M-Pesa numbers of a signed-in user (customer or worker).
CREATE TABLE payment_methods (
  payment_method_id uuid PRIMARY KEY,
  owner_id          text NOT NULL,
  kind              text NOT NULL DEFAULT 'mpesa' CHECK (kind IN ('mpesa')),
  phone             text NOT NULL,
  label             text NOT NULL DEFAULT '',
  is_default        boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (owner_id, phone)
);
-- At most one default per owner.
CREATE UNIQUE INDEX payment_methods_one_default ON payment_methods (owner_id) WHERE is_default;
