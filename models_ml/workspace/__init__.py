"""The model owner workspace (issue 13): what the portal shows a model owner of every model
version, and the signed stage changes they make from it (``clinicians.portal.model_owner``).

=============  ====================================================================================
``selectors``  every version in a line; one version's page (lineage, gates, fairness, privacy,
               monitoring, alerts, the stage changes open to it)
``evidence``   a gate record and the owners' card as figures and tables (pure)
``services``   promotion, shadow and rollback through the registry, signed with the password
=============  ====================================================================================
"""
