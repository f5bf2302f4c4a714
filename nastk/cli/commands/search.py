"""`nastk search`: a search config run (or resumed) into its run folder by the run lifecycle
(:func:`nastk.pipelines.search.run_search_config`)."""
