/* Zone editor: turns the zone text input (space-separated territory references) into an
   autocomplete over régions, départements, EPCI and communes, with Flask-Admin's bundled
   select2 (3.5). Without JavaScript the input stays a plain text field. */
(function ($) {
  'use strict';
  if (!$ || !$.fn || !$.fn.select2) {
    return;
  }
  $(function () {
    $('input[data-role="zone-editor"]').each(function () {
      var $input = $(this);
      var initial = $input.data('choices') || [];
      $input.select2({
        multiple: true,
        width: '100%',
        separator: ' ',
        minimumInputLength: 2,
        placeholder: $input.attr('placeholder'),
        ajax: {
          url: $input.data('url'),
          dataType: 'json',
          quietMillis: 250,
          data: function (term) {
            return { q: term };
          },
          results: function (data) {
            return { results: data };
          }
        },
        initSelection: function (element, callback) {
          callback(initial);
        },
        formatInputTooShort: function () {
          return 'Tapez au moins 2 caractères (nom, code ou code postal)';
        },
        formatNoMatches: function () {
          return 'Aucun territoire trouvé';
        },
        formatSearching: function () {
          return 'Recherche…';
        },
        formatLoadMore: function () {
          return 'Chargement…';
        }
      });
    });
  });
})(window.jQuery);
