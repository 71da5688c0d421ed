"""Month capacity simulator (``peak-sim``): replay a month of counter arrivals from the scenario.

Ops run it before month-end to see how long the last week's lines get, how many people are turned
away, and what more counters or more online payment would change. Layers, pure first:

* ``demand``   the scenario's ``[demand]`` figures (with flag overrides) and the arrivals they make;
* ``policies`` what happens at the door: nothing, admission (refuse early), or the online hint;
* ``model``    the discrete-event simulation of one substation for one day;
* ``month``    a month of days, consumers sent home coming back the next working day, bookers
               moved to their slot's day;
* ``booking``  slot bookings from phones: slot capacity and who gets which slot;
* ``whatif``   the same month with other counter numbers, online shares or booking shares;
* ``coverage`` the busiest day run through the server's own queue and estimator: the share of
               tokens called within the p50 and p90 they were given (``estimate coverage``);
* ``report``   the per-day table, the PNG plots and the Markdown summary;
* ``schedule`` the runs in a process pool in the order that keeps every core busy, each plot
               drawn as soon as its figures are in;
* ``cli``      ``peak-sim``.
"""
