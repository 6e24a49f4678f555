-- orders schema, version 5: fake one, pay ten pays at most ten times the price per order, and
-- never on top of a return or refund. The service checks both before it writes; these make them
-- hold for every writer and every interleaving of processes, inside the writing transaction.

-- At most one counterfeit compensation per order (so far implied by one counterfeit claim per
-- order and one payout per claim; now stated on the money itself).
CREATE UNIQUE INDEX payouts_one_compensation_per_order ON payouts (order_id)
    WHERE kind = 'counterfeit_compensation';

-- A compensation is paid only while the goods are with the buyer, not returned nor refunded.
CREATE TRIGGER payouts_compensation_not_after_refund
BEFORE INSERT ON payouts
WHEN NEW.kind = 'counterfeit_compensation'
    AND (SELECT status FROM orders WHERE id = NEW.order_id) NOT IN ('delivered', 'completed')
BEGIN
    SELECT RAISE(ABORT, 'order_settled: compensation on a returned or refunded order');
END;

-- An order whose compensation was paid is never returned or refunded as well.
CREATE TRIGGER orders_no_refund_after_compensation
BEFORE UPDATE OF status ON orders
WHEN NEW.status IN ('return_requested', 'returned', 'refunded')
    AND EXISTS (SELECT 1 FROM payouts
                WHERE order_id = NEW.id AND kind = 'counterfeit_compensation')
BEGIN
    SELECT RAISE(ABORT, 'order_settled: return or refund of a compensated order');
END;
