"""Queueing models with known answers, to hold the simulator to: Erlang C and Erlang A.

Both have Poisson arrivals (rate lambda), exponential service (rate mu = 1 / mean) and c
counters serving one FIFO line. Erlang C (M/M/c) has everyone wait as long as it takes; Erlang A
(M/M/c+M, Palm's model, the one call centres are sized with since Garnett, Mandelbaum and Reiman,
2002) has each person give up once their wait passes a patience drawn from an exponential
distribution (rate theta = 1 / mean patience).

Erlang A is worked out on its birth-death chain, the number n of people present (in service or
waiting): births at lambda, deaths at mu min(n, c) + theta max(n - c, 0). Its stationary
distribution is

    pi_n  proportional to  prod_{m=1..n} lambda / (mu min(m, c) + theta max(m - c, 0)),

truncated at n = c + K with K well past where pi falls below 1e-16 of its peak (exact enough:
the rest of the tail is dropped, nothing is approximated). An arrival sees pi (PASTA). One who
finds k >= 0 waiting ahead, in a line where everyone gives up at rate theta, moves up one place
at rate c mu + j theta while j are ahead (a counter frees or one ahead gives up) and gives up
at rate theta, so from j ahead the next event comes after an exponential time of rate
r_j = c mu + (j + 1) theta and moves them up with probability (c mu + j theta) / r_j. Hence

    P(served | k)              = prod_{j=0..k} (c mu + j theta) / r_j
    E[wait; served | k]        = P(served | k) x sum_{j=0..k} 1 / r_j

(the time of a race between exponentials does not depend on who wins it), and over pi:

    P(abandon)                 = 1 - sum_{n<c} pi_n - sum_k pi_{c+k} P(served | k)
    E[wait | served]           = sum_k pi_{c+k} E[wait; served | k] / (1 - P(abandon))
    E[wait], all who joined    = E[people waiting] / lambda      (Little's law)

and P(abandon) = theta E[people waiting] / lambda, which the tests check as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ErlangC:
    """M/M/c: P(wait > x) = p_wait x exp(-decay x)."""

    p_wait: float
    decay: float          # per second

    @property
    def mean_wait_s(self) -> float:
        return self.p_wait / self.decay


def erlang_c(arrival_rate: float, mean_service_s: float, counters: int) -> ErlangC:
    """Erlang C for ``counters`` counters; the load must stay below them."""
    a = arrival_rate * mean_service_s
    if a >= counters:
        raise ValueError(f"offered load {a:g} must be below the {counters} counters")
    term, below = 1.0, 0.0          # a^k / k!, built up to avoid huge factorials
    for k in range(counters):
        below += term
        term *= a / (k + 1)
    top = term / (1 - a / counters)
    return ErlangC(top / (below + top), counters / mean_service_s - arrival_rate)


@dataclass(frozen=True)
class ErlangA:
    """M/M/c+M in the figures the simulator reports."""

    p_wait: float             # an arrival finds every counter busy
    p_abandon: float          # gives up before being served
    mean_wait_served_s: float
    mean_wait_s: float        # of everyone who joined, served or not (time in line)
    mean_waiting: float       # people waiting (not in service), time average


def erlang_a(arrival_rate: float, mean_service_s: float, mean_patience_s: float,
             counters: int) -> ErlangA:
    """Erlang A on the truncated birth-death chain (see the module docstring)."""
    if arrival_rate <= 0 or mean_service_s <= 0 or mean_patience_s <= 0 or counters < 1:
        raise ValueError("arrival rate, mean service, mean patience and counters must be above 0")
    lam, mu, theta, c = arrival_rate, 1.0 / mean_service_s, 1.0 / mean_patience_s, counters
    # pi_n up to c + K, in logs (no overflow), K past the peak of the line by many spreads
    peak = max(0.0, (lam - c * mu) / theta)
    k_max = int(peak + 40 * math.sqrt(peak + 1) + 200)
    logs = [0.0]
    for n in range(1, c + k_max + 1):
        logs.append(logs[-1] + math.log(lam / (mu * min(n, c) + theta * max(n - c, 0))))
    top = max(logs)
    pi = [math.exp(x - top) for x in logs]
    total = sum(pi)
    pi = [p / total for p in pi]
    p_wait = sum(pi[c:])
    served_after_wait = waited_served = 0.0
    p_served_k, wait_sum = 1.0, 0.0          # running product and sum over j = 0..k
    for k in range(k_max + 1):
        r = c * mu + (k + 1) * theta
        p_served_k *= (c * mu + k * theta) / r
        wait_sum += 1.0 / r
        served_after_wait += pi[c + k] * p_served_k
        waited_served += pi[c + k] * p_served_k * wait_sum
    p_served = (1.0 - p_wait) + served_after_wait
    waiting = sum(k * pi[c + k] for k in range(k_max + 1))
    return ErlangA(p_wait=p_wait, p_abandon=1.0 - p_served,
                   mean_wait_served_s=waited_served / p_served,
                   mean_wait_s=waiting / lam, mean_waiting=waiting)
