"""The readiness report: a month of calls, drills, faults, visits and stall matters per building
and per butler, from the central's database (figures), drawn (charts), printed (pdf), at the
command line (cli) and on a console page (app)."""
