"""The bibliography of the report: every key a section may cite (``_Context.cite``).

The Methods section lists the cited ones, in the order first cited.
"""

REFERENCES = {
    "AG": "Andersen PK, Gill RD (1982). Cox's regression model for counting processes: a large "
          "sample study. Annals of Statistics 10:1100-1120.",
    "PWP": "Prentice RL, Williams BJ, Peterson AV (1981). On the regression analysis of "
           "multivariate failure time data. Biometrika 68:373-379.",
    "WLW": "Wei LJ, Lin DY, Weissfeld L (1989). Regression analysis of multivariate incomplete "
           "failure time data by modeling marginal distributions. JASA 84:1065-1073.",
    "LW": "Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model. "
          "JASA 84:1074-1078.",
    "AJ": "Aalen OO, Johansen S (1978). An empirical transition matrix for non-homogeneous Markov "
          "chains based on censored observations. Scand J Statist 5:141-150.",
    "LN": "Lawless JF, Nadeau C (1995). Some simple robust methods for the analysis of recurrent "
          "events. Technometrics 37:158-168.",
    "KM": "Kaplan EL, Meier P (1958). Nonparametric estimation from incomplete observations. "
          "JASA 53:457-481.",
    "GT": "Grambsch PM, Therneau TM (1994). Proportional hazards tests and diagnostics based on "
          "weighted residuals. Biometrika 81:515-526.",
    "DT": "Singer JD, Willett JB (1993). It's about time: using discrete-time survival analysis to "
          "study duration and the timing of events. J Educ Stat 18:155-195.",
    "FIRTH": "Heinze G, Schemper M (2001). A solution to the problem of monotone likelihood in "
             "Cox regression. Biometrics 57:114-119.",
    "BOND": "Bond GR, Drake RE, McHugo GJ, Peterson AE, Jones AM, Williams J (2014). Long-term "
            "sustainability of evidence-based practices in community mental health agencies. "
            "Adm Policy Ment Health 41:228-236.",
    "KL": "Kalbfleisch JD, Lawless JF (1985). The analysis of panel data under a Markov "
          "assumption. J Am Stat Assoc 80:863-871.",
    "MSM": "Jackson CH (2011). Multi-state models for panel data: the msm package for R. "
           "J Stat Softw 38(8):1-29.",
    "GRAY": "Gray RJ (1988). A class of K-sample tests for comparing the cumulative incidence "
            "of a competing risk. Annals of Statistics 16:1141-1154.",
    "FG": "Fine JP, Gray RJ (1999). A proportional hazards model for the subdistribution of a "
          "competing risk. JASA 94:496-509.",
    "GESKUS": "Geskus RB (2011). Cause-specific cumulative incidence estimation and the Fine "
              "and Gray model under both left truncation and right censoring. Biometrics "
              "67:39-49.",
    "HUNTER": "Hunter SB, Han B, Slaughter ME, Godley SH, Garner BR (2015). Associations between "
              "implementation characteristics and evidence-based practice sustainment: a study "
              "of the Adolescent Community Reinforcement Approach. Implementation Science 10:173.",
    "ANDERSEN": "Andersen PK, Borgan O, Gill RD, Keiding N (1993). Statistical Models Based on "
                "Counting Processes. Springer (state occupation from transition models; "
                "product integral).",
}
